//! Pre-commit and pre-merge webhooks from `_lakefs_actions/*.yaml` (lakefs-api.md §8).
//!
//! Before a commit or merge, the REST handler calls [`run_pre_hooks`]. It reads the action files that are direct
//! children of `_lakefs_actions/` from the event's *source ref* (§8.2: the branch including its staged changes for
//! pre-commit, the source commit for pre-merge), keeps the actions whose `on.<event>.branches` globs match the
//! branch (the merge destination for merges), and runs them: actions concurrently, the hooks of one action in
//! order. A webhook is one JSON POST (§8.4); any non-2xx answer, timeout or connection error fails it.
//!
//! Every run that executed at least one action is recorded as an [`ActionRun`] with each hook's log (request,
//! response status, response body), so `GET /actions/runs/...` explains a rejection. A failed run aborts the
//! operation with [`HookError::Aborted`] (412) whose message follows lakeFS's wording (§8.5) and also carries the
//! hook's response body, since that is where a hook explains itself. Action files that cannot be read or parsed
//! are not an action failure but a server-side error ([`HookError::InvalidActions`], 500), as in lakeFS.
//!
//! Awkward cases: a sub-folder under `_lakefs_actions/` cannot be loaded as a file and fails every run of the
//! ref (lakeFS does the same); when no action matches, nothing runs and nothing is recorded; a successful run is
//! returned to the caller, which records it once the operation produced (or failed to produce) a commit id.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::store::{ActionRun, HookRun, ListEntry, PageRequest, StoreError, MAX_PAGE};
use super::ServerState;

/// Where action files live; only direct children count.
pub const ACTIONS_PREFIX: &str = "_lakefs_actions/";
/// Webhook timeout when the action does not set one (lakeFS: 1 minute).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Action files larger than this are refused rather than read into memory.
const MAX_ACTION_FILE: u64 = 1 << 20;
/// How much of a hook's response body goes into the error message (the full body is in the hook log).
const MAX_BODY_IN_MESSAGE: usize = 4096;
/// Environment variables readable as `{{ ENV.NAME }}` (lakeFS's code default).
const ENV_PREFIX: &str = "LAKEFSACTION_";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    PreCommit,
    PreMerge,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PreCommit => "pre-commit",
            EventType::PreMerge => "pre-merge",
        }
    }
}

/// What the hooks of one event are told about it.
#[derive(Clone, Debug)]
pub struct HookContext {
    pub event: EventType,
    pub repository: String,
    /// The committed branch, or the merge destination.
    pub branch: String,
    /// The ref action files are read from and that the payload reports as `source_ref`.
    pub source_ref: String,
    pub commit_message: String,
    pub committer: String,
    pub commit_metadata: BTreeMap<String, String>,
    /// Merge events: the source as the client named it.
    pub merge_source: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A hook failed; the operation must not happen (HTTP 412).
    #[error("{message}")]
    Aborted { run_id: String, message: String },
    /// Action files could not be loaded or are invalid (HTTP 500).
    #[error("{0}")]
    InvalidActions(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

// ---- action files ----

#[derive(Debug, Deserialize)]
struct ActionFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    on: BTreeMap<String, Option<EventFilter>>,
    #[serde(default)]
    hooks: Vec<HookSpec>,
}

#[derive(Debug, Default, Deserialize)]
struct EventFilter {
    #[serde(default)]
    branches: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct HookSpec {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, rename = "if")]
    condition: Option<String>,
    #[serde(default)]
    properties: serde_yaml::Value,
}

/// A validated action.
#[derive(Debug)]
struct Action {
    name: String,
    on: BTreeMap<String, Vec<glob::Pattern>>,
    hooks: Vec<HookSpec>,
}

impl Action {
    fn matches(&self, event: EventType, branch: &str) -> bool {
        match self.on.get(event.as_str()) {
            None => false,
            Some(globs) => globs.is_empty() || globs.iter().any(|g| g.matches(branch)),
        }
    }
}

fn action_name_re() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^\w[\w\-. ]+$").expect("static regex"))
}

fn hook_id_re() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[_a-zA-Z][\-_a-zA-Z0-9]{1,255}$").expect("static regex"))
}

/// Parses and validates one action file (lakefs-api.md §8.1 schema).
fn parse_action(path: &str, text: &[u8]) -> Result<Action, String> {
    let file: ActionFile = serde_yaml::from_slice(text).map_err(|e| format!("action file {path}: {e}"))?;
    let name = file.name.unwrap_or_default();
    if !action_name_re().is_match(&name) {
        return Err(format!("action file {path}: invalid or missing action name '{name}'"));
    }
    if file.on.is_empty() {
        return Err(format!("action {name}: 'on' is required"));
    }
    let mut on = BTreeMap::new();
    for (event, filter) in file.on {
        let globs = filter
            .unwrap_or_default()
            .branches
            .unwrap_or_default()
            .iter()
            .map(|g| glob::Pattern::new(g).map_err(|e| format!("action {name}: branch pattern '{g}': {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        on.insert(event, globs);
    }
    let mut ids = BTreeSet::new();
    for hook in &file.hooks {
        if !hook_id_re().is_match(&hook.id) {
            return Err(format!("action {name}: invalid hook id '{}'", hook.id));
        }
        if !ids.insert(hook.id.as_str()) {
            return Err(format!("action {name}: duplicate hook id '{}'", hook.id));
        }
    }
    Ok(Action {
        name,
        on,
        hooks: file.hooks,
    })
}

/// Loads every action file directly under `_lakefs_actions/` of `source_ref`, in key order.
async fn load_actions(state: &ServerState, repository: &str, source_ref: &str) -> Result<Vec<Action>, HookError> {
    let store = state.store.clone();
    let (repo, reference) = (repository.to_string(), source_ref.to_string());
    let entries = tokio::task::spawn_blocking(move || {
        let mut entries = Vec::new();
        let mut page = PageRequest {
            prefix: ACTIONS_PREFIX.to_string(),
            after: String::new(),
            amount: MAX_PAGE,
        };
        loop {
            let listed = store.list_objects(&repo, &reference, &page, Some("/"))?;
            entries.extend(listed.items);
            match entries.last() {
                Some(last) if listed.has_more => page.after = last.path().to_string(),
                _ => return Ok::<_, StoreError>(entries),
            }
        }
    })
    .await
    .map_err(|e| HookError::InvalidActions(format!("loading actions: {e}")))??;

    let mut actions: Vec<Action> = Vec::new();
    for entry in entries {
        let (path, entry) = match entry {
            ListEntry::Object { path, entry } => (path, entry),
            ListEntry::CommonPrefix(prefix) => {
                return Err(HookError::InvalidActions(format!(
                    "action file {prefix}: is a folder, not a file"
                )))
            }
        };
        if entry.size > MAX_ACTION_FILE {
            return Err(HookError::InvalidActions(format!(
                "action file {path}: larger than {MAX_ACTION_FILE} bytes"
            )));
        }
        let text = tokio::fs::read(state.store.blob_path(&entry.blob))
            .await
            .map_err(|e| HookError::InvalidActions(format!("reading action file {path}: {e}")))?;
        let action = parse_action(&path, &text).map_err(HookError::InvalidActions)?;
        if actions.iter().any(|a| a.name == action.name) {
            return Err(HookError::InvalidActions(format!(
                "duplicate action name '{}'",
                action.name
            )));
        }
        actions.push(action);
    }
    Ok(actions)
}

// ---- running ----

/// The actions of one event that matched its branch, loaded and validated but not yet run.
#[derive(Debug)]
pub struct PreparedRun {
    context: HookContext,
    actions: Vec<Action>,
}

/// Loads the action files of `ctx`'s source ref and keeps those matching its event and branch. `Ok(None)`:
/// nothing to run (nothing will be recorded either).
pub async fn prepare_pre_hooks(state: &ServerState, ctx: &HookContext) -> Result<Option<PreparedRun>, HookError> {
    let actions: Vec<Action> = load_actions(state, &ctx.repository, &ctx.source_ref)
        .await?
        .into_iter()
        .filter(|a| a.matches(ctx.event, &ctx.branch))
        .collect();
    Ok((!actions.is_empty()).then(|| PreparedRun {
        context: ctx.clone(),
        actions,
    }))
}

/// Runs the pre-hooks of `ctx`: [`prepare_pre_hooks`] then [`PreparedRun::run`].
pub async fn run_pre_hooks(state: &ServerState, ctx: &HookContext) -> Result<Option<ActionRun>, HookError> {
    match prepare_pre_hooks(state, ctx).await? {
        None => Ok(None),
        Some(prepared) => prepared.run(state).await.map(Some),
    }
}

impl PreparedRun {
    /// Runs the matched actions. `Ok(run)`: every hook passed; the caller sets `commit_id` and records the run
    /// with [`record_run`]. A failed run is recorded here and returned as [`HookError::Aborted`].
    pub async fn run(self, state: &ServerState) -> Result<ActionRun, HookError> {
        let ctx = &self.context;
        let run_id = new_run_id();
        let start_time = rfc3339_now();
        let outcomes = futures::future::join_all(
            self.actions
                .iter()
                .enumerate()
                .map(|(index, action)| run_action(state, ctx, index, action)),
        )
        .await;
        let mut hooks = Vec::new();
        let mut errors = Vec::new();
        for outcome in outcomes {
            hooks.extend(outcome.hooks);
            errors.extend(outcome.errors);
        }
        hooks.sort_by(|a, b| a.hook_run_id.cmp(&b.hook_run_id));
        let run = ActionRun {
            run_id: run_id.clone(),
            branch: ctx.branch.clone(),
            start_time,
            end_time: Some(rfc3339_now()),
            event_type: ctx.event.as_str().to_string(),
            status: if errors.is_empty() { "completed" } else { "failed" }.to_string(),
            commit_id: String::new(),
            hooks,
        };
        if errors.is_empty() {
            return Ok(run);
        }
        record_run(state, &ctx.repository, &run);
        let message = format!(
            "{} hook aborted, run id '{run_id}': {}",
            ctx.event.as_str(),
            multi_error(&errors)
        );
        Err(HookError::Aborted { run_id, message })
    }
}

/// Stores a run; a failure is logged, not returned: the operation it describes has already happened.
pub fn record_run(state: &ServerState, repository: &str, run: &ActionRun) {
    if let Err(error) = state.store.record_action_run(repository, run) {
        tracing::error!(%error, run_id = %run.run_id, "recording action run failed");
    }
}

struct ActionOutcome {
    hooks: Vec<HookRun>,
    errors: Vec<String>,
}

async fn run_action(state: &ServerState, ctx: &HookContext, action_index: usize, action: &Action) -> ActionOutcome {
    let mut outcome = ActionOutcome {
        hooks: Vec::new(),
        errors: Vec::new(),
    };
    let mut failed = false;
    for (hook_index, hook) in action.hooks.iter().enumerate() {
        let hook_run_id = format!("{action_index:04}_{hook_index:04}");
        let start_time = rfc3339_now();
        let should_run = match hook.condition.as_deref().map(str::trim).unwrap_or("") {
            "" | "success()" => !failed,
            "failure()" => failed,
            "true" | "always()" => true,
            "false" => false,
            other => {
                // lakeFS evaluates a small expression language; only the common forms are understood here.
                failed = true;
                outcome.errors.push(format!(
                    "hook run id '{hook_run_id}' failed on action '{}' hook '{}': unsupported 'if' expression \
                     '{other}'",
                    action.name, hook.id
                ));
                outcome.hooks.push(HookRun {
                    hook_run_id,
                    action: action.name.clone(),
                    hook_id: hook.id.clone(),
                    start_time,
                    end_time: Some(rfc3339_now()),
                    status: "failed".to_string(),
                    output: format!("unsupported 'if' expression '{other}'\n"),
                });
                continue;
            }
        };
        if !should_run {
            outcome.hooks.push(HookRun {
                hook_run_id,
                action: action.name.clone(),
                hook_id: hook.id.clone(),
                start_time,
                end_time: None,
                status: "skipped".to_string(),
                output: String::new(),
            });
            continue;
        }
        let (result, output) = match hook.kind.as_str() {
            "webhook" => run_webhook(state, ctx, action, hook).await,
            other => {
                let cause = format!("hook type '{other}' is not supported by this server (only 'webhook')");
                (Err(cause.clone()), format!("{cause}\n"))
            }
        };
        if let Err(cause) = &result {
            failed = true;
            outcome.errors.push(format!(
                "hook run id '{hook_run_id}' failed on action '{}' hook '{}': action failed: {cause}",
                action.name, hook.id
            ));
        }
        outcome.hooks.push(HookRun {
            hook_run_id,
            action: action.name.clone(),
            hook_id: hook.id.clone(),
            start_time,
            end_time: Some(rfc3339_now()),
            status: if result.is_ok() { "completed" } else { "failed" }.to_string(),
            output,
        });
    }
    outcome
}

#[derive(Debug, Deserialize)]
struct WebhookProperties {
    url: String,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    query_params: BTreeMap<String, QueryValue>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum QueryValue {
    One(String),
    Many(Vec<String>),
}

/// The §8.4 payload; the first five fields always, the others only when set.
fn webhook_payload(ctx: &HookContext, action: &Action, hook: &HookSpec) -> Value {
    let mut body = Map::new();
    body.insert("event_type".into(), json!(ctx.event.as_str()));
    body.insert("event_time".into(), json!(rfc3339_now()));
    body.insert("action_name".into(), json!(action.name));
    body.insert("hook_id".into(), json!(hook.id));
    body.insert("repository_id".into(), json!(ctx.repository));
    body.insert("branch_id".into(), json!(ctx.branch));
    body.insert("source_ref".into(), json!(ctx.source_ref));
    if !ctx.commit_message.is_empty() {
        body.insert("commit_message".into(), json!(ctx.commit_message));
    }
    if !ctx.committer.is_empty() {
        body.insert("committer".into(), json!(ctx.committer));
    }
    if !ctx.commit_metadata.is_empty() {
        body.insert("commit_metadata".into(), json!(ctx.commit_metadata));
    }
    if let Some(source) = &ctx.merge_source {
        body.insert("merge_source".into(), json!(source));
    }
    Value::Object(body)
}

/// Calls one webhook. Returns the failure cause (for the error message) and the hook log.
async fn run_webhook(
    state: &ServerState,
    ctx: &HookContext,
    action: &Action,
    hook: &HookSpec,
) -> (Result<(), String>, String) {
    let mut log = String::new();
    let props: WebhookProperties = match serde_yaml::from_value(hook.properties.clone()) {
        Ok(p) => p,
        Err(e) => {
            let cause = format!("invalid webhook properties: {e}");
            return (Err(cause.clone()), format!("{cause}\n"));
        }
    };
    let timeout = match props.timeout.as_deref() {
        None | Some("") => DEFAULT_TIMEOUT,
        Some(t) => match parse_go_duration(t) {
            Some(d) => d,
            None => {
                let cause = format!("invalid webhook timeout '{t}'");
                return (Err(cause.clone()), format!("{cause}\n"));
            }
        },
    };
    let substituted = (|| -> Result<_, String> {
        let url = substitute_env(&props.url)?;
        let mut query = Vec::new();
        for (key, value) in &props.query_params {
            match value {
                QueryValue::One(v) => query.push((key.clone(), substitute_env(v)?)),
                QueryValue::Many(vs) => {
                    for v in vs {
                        query.push((key.clone(), substitute_env(v)?));
                    }
                }
            }
        }
        let mut headers = Vec::new();
        for (key, value) in &props.headers {
            headers.push((key.clone(), substitute_env(value)?, value.contains("{{")));
        }
        Ok((url, query, headers))
    })();
    let (url, query, headers) = match substituted {
        Ok(v) => v,
        Err(cause) => return (Err(cause.clone()), format!("{cause}\n")),
    };
    let mut url = match url::Url::parse(&url) {
        Ok(u) => u,
        Err(e) => {
            let cause = format!("invalid webhook url '{url}': {e}");
            return (Err(cause.clone()), format!("{cause}\n"));
        }
    };
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    let body = webhook_payload(ctx, action, hook).to_string();

    let _ = writeln!(
        log,
        "Request:\nPOST {url}\nRequest Headers:\nContent-Type: application/json"
    );
    let mut request = state
        .http
        .post(url.clone())
        .timeout(timeout)
        .header("content-type", "application/json")
        .body(body.clone());
    for (key, value, secret) in &headers {
        let shown = if *secret { "*******" } else { value.as_str() };
        let _ = writeln!(log, "{key}: {shown}");
        request = request.header(key.as_str(), value.as_str());
    }
    let _ = writeln!(log, "\nRequest Body:\n{body}\n");

    let started = Instant::now();
    let response = request.send().await;
    let elapsed = started.elapsed();
    let _ = writeln!(log, "Request Duration: {elapsed:?}\n");
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let cause = if e.is_timeout() {
                format!("webhook request failed: timed out after {timeout:?}")
            } else {
                format!("webhook request failed: {}", error_chain(&e))
            };
            let _ = writeln!(log, "{cause}");
            return (Err(cause), log);
        }
    };
    let status = response.status();
    let _ = writeln!(log, "Response Status Code: {}\nResponse Headers:", status.as_u16());
    for (name, value) in response.headers() {
        let _ = writeln!(log, "{name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    let text = match response.text().await {
        Ok(t) => t,
        Err(e) => format!("<reading response body failed: {}>", error_chain(&e)),
    };
    let _ = writeln!(log, "\nResponse Body:\n{text}");
    if status.is_success() {
        (Ok(()), log)
    } else {
        let mut cause = format!("webhook request failed (status code: {})", status.as_u16());
        let shown = text.trim();
        if !shown.is_empty() {
            let cut = floor_char_boundary(shown, MAX_BODY_IN_MESSAGE);
            let _ = write!(cause, ": {}", &shown[..cut]);
        }
        (Err(cause), log)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// hashicorp/go-multierror's rendering, which lakeFS uses for the hook error list.
fn multi_error(errors: &[String]) -> String {
    if errors.len() == 1 {
        return format!("1 error occurred:\n\t* {}\n\n", errors[0]);
    }
    let points: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
    format!("{} errors occurred:\n\t{}\n\n", errors.len(), points.join("\n\t"))
}

/// Replaces `{{ ENV.NAME }}`: names with the allowed prefix come from the environment (unset is an error),
/// others become empty strings, as lakeFS does.
fn substitute_env(value: &str) -> Result<String, String> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"\{\{\s*ENV\.(\w+)\s*\}\}").expect("static regex"));
    let mut missing = None;
    let replaced = re.replace_all(value, |caps: &regex::Captures<'_>| {
        let name = &caps[1];
        if !name.starts_with(ENV_PREFIX) {
            return String::new();
        }
        std::env::var(name).unwrap_or_else(|_| {
            missing = Some(name.to_string());
            String::new()
        })
    });
    match missing {
        Some(name) => Err(format!("environment variable {name} is not set")),
        None => Ok(replaced.into_owned()),
    }
}

/// Parses a Go duration string (`300ms`, `10s`, `1m30s`, `1.5h`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Run ids sort newest first, like lakeFS's: the inverted time in nanoseconds, then a random suffix.
fn new_run_id() -> String {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let nanos = u64::try_from(nanos).unwrap_or(0);
    let suffix: u16 = rand::random();
    format!("{:016x}{suffix:04x}", u64::MAX - nanos)
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn action_file_parsing_and_matching() {
        let yaml = b"name: check schema\non:\n  pre-commit:\n    branches: [main, 'ingest-*']\n  pre-merge:\n\
hooks:\n  - id: check\n    type: webhook\n    properties:\n      url: http://127.0.0.1:1/hook\n      timeout: 10s\n";
        let action = parse_action("_lakefs_actions/a.yaml", yaml).unwrap();
        assert_eq!(action.name, "check schema");
        assert!(action.matches(EventType::PreCommit, "main"));
        assert!(action.matches(EventType::PreCommit, "ingest-2024"));
        assert!(!action.matches(EventType::PreCommit, "dev"));
        assert!(action.matches(EventType::PreMerge, "anything"));
        assert_eq!(action.hooks.len(), 1);
    }

    #[test]
    fn invalid_action_files_are_rejected() {
        assert!(
            parse_action("a", b"on: {pre-commit: {}}\nhooks: []").is_err(),
            "missing name"
        );
        assert!(parse_action("a", b"name: x1\nhooks: []").is_err(), "missing on");
        assert!(parse_action(
            "a",
            b"name: ok\non: {pre-commit: }\nhooks: [{id: '1bad', type: webhook}]"
        )
        .is_err());
        assert!(parse_action("a", b"name: ok\non: [").is_err(), "not YAML");
        let dup = b"name: ok\non: {pre-commit: }\nhooks: [{id: h1, type: webhook}, {id: h1, type: webhook}]";
        assert!(parse_action("a", dup).is_err());
    }

    #[test]
    fn run_ids_sort_newest_first() {
        let older = new_run_id();
        std::thread::sleep(Duration::from_millis(2));
        let newer = new_run_id();
        assert!(newer < older);
        assert_eq!(newer.len(), 20);
    }

    #[test]
    fn multi_error_format_matches_go_multierror() {
        assert_eq!(multi_error(&["a".into()]), "1 error occurred:\n\t* a\n\n");
        assert_eq!(
            multi_error(&["a".into(), "b".into()]),
            "2 errors occurred:\n\t* a\n\t* b\n\n"
        );
    }

    #[test]
    fn env_substitution() {
        assert_eq!(
            substitute_env("x{{ ENV.HOME }}y").unwrap(),
            "xy",
            "names without the prefix are empty"
        );
        assert!(substitute_env("{{ENV.LAKEFSACTION_SURELY_UNSET_VAR}}").is_err());
        assert_eq!(substitute_env("plain").unwrap(), "plain");
    }
}
