#!/usr/bin/env python3
"""Compare a conformance run's per-case results with the ratchet file kept in the repository.

    ratchet.py [--accept] EXPECTED RESULTS      (RESULTS: lines "CASE pass|fail|skip")

EXPECTED has one case per line, "CASE RESULT", optionally followed by "# reason" (why a case fails: kept when the
file is rewritten). Lines starting with '#' are a header, kept as they are.

- A case expected to pass that now fails or is skipped is a regression: listed, exit status 1.
- A case that is not in the file yet and does not pass is a regression too (a new case must be looked at).
- A case that now passes but was expected to fail or skip (or is new) improves the file: EXPECTED is rewritten
  with the new results and the script says which cases moved; exit status 0.
- A case in the file that no longer runs is dropped from the file.
- --accept writes the results as they are (regressions included): for a deliberate change of what is expected.
"""

import sys


def parse_expected(path):
    header, cases = [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                if not cases:
                    header.append(line)
                continue
            body, _, reason = line.partition("#")
            fields = body.split()
            if len(fields) != 2:
                sys.exit(f"{path}: malformed line: {line!r}")
            cases[fields[0]] = (fields[1], reason.strip())
    return header, cases


def parse_results(path):
    results = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) == 2 and fields[1] in ("pass", "fail", "skip"):
                results[fields[0]] = fields[1]
    return results


def main():
    args = sys.argv[1:]
    accept = "--accept" in args
    expected_path, results_path = [a for a in args if a != "--accept"]
    header, expected = parse_expected(expected_path)
    results = parse_results(results_path)
    if not results:
        sys.exit("no results: the conformance run printed no case")

    regressions, improvements = [], []
    for case, now in sorted(results.items()):
        before = expected.get(case, (None, ""))[0]
        if now == "pass" and before != "pass":
            improvements.append((case, before or "new"))
        elif now != "pass" and before in ("pass", None):
            regressions.append((case, before or "new", now))

    counts = {r: sum(1 for v in results.values() if v == r) for r in ("pass", "fail", "skip")}
    print(f"conformance: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped "
          f"({len(results)} cases)")
    for case, before, now in regressions:
        print(f"REGRESSION: {case}: expected {before}, now {now}")
    for case, before in improvements[:40]:
        print(f"newly passing: {case} (was {before})")
    if len(improvements) > 40:
        print(f"... and {len(improvements) - 40} more newly passing")
    dropped = sorted(set(expected) - set(results))
    if regressions and not accept:
        print(f"{len(regressions)} case(s) regressed; {expected_path} is left unchanged")
        return 1
    if improvements or dropped or regressions:
        width = max(len(c) for c in results) + 2
        with open(expected_path, "w", encoding="utf-8") as f:
            for line in header:
                f.write(line + "\n")
            for case, now in sorted(results.items()):
                reason = expected.get(case, (None, ""))[1] if now != "pass" else ""
                line = f"{case:{width}}{now}"
                f.write(f"{line}  # {reason}\n" if reason else line + "\n")
        print(f"{expected_path} updated: {len(improvements)} newly passing, {len(regressions)} accepted as "
              f"failing, {len(dropped)} no longer run; commit the change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
