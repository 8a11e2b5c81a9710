//! `lakefs-fuse generate man|completions DIR`: manual pages and shell completions from the clap definitions, so
//! they never drift from the real options. The Debian package build runs it (see `packaging/build-deb.sh`).
//!
//! Man pages: `lakefs-fuse.1` and one per visible subcommand (`lakefs-fuse-mount.1`, `lakefs-fuse-serve.1`,
//! `lakefs-fuse-commit.1`, `lakefs-fuse-merge.1`, `lakefs-fuse-status.1`), plus
//! `mount.lakefs.8`, the mount helper's page in section 8 next to the other `mount.*` helpers. The helper page is
//! the mount subcommand under the helper's name, with the mount(8) helper flags (`-s -f -n -v`) it accepts and
//! sections on fstab, systemd and logging that only make sense there.
//!
//! Completions: `lakefs-fuse.bash`, `_lakefs-fuse` (zsh) and `lakefs-fuse.fish`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};

use super::{Cli, MountArgs};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// What to generate.
    pub what: Generate,
    /// Output directory (created if missing).
    pub dir: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generate {
    /// Manual pages (roff).
    Man,
    /// bash, zsh and fish completions.
    Completions,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    match args.what {
        Generate::Man => generate_man(&args.dir),
        Generate::Completions => generate_completions(&args.dir),
    }
    .with_context(|| format!("writing to {}", args.dir.display()))?;
    Ok(())
}

fn generate_completions(dir: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "lakefs-fuse", dir)?;
    }
    Ok(())
}

fn generate_man(dir: &Path) -> std::io::Result<()> {
    clap_mangen::generate_to(Cli::command(), dir)?;
    let helper = clap_mangen::Man::new(mount_helper_command()).section("8");
    let mut file = std::fs::File::create(dir.join(helper.get_filename()))?;
    helper.render_title(&mut file)?;
    helper.render_name_section(&mut file)?;
    helper.render_synopsis_section(&mut file)?;
    helper.render_description_section(&mut file)?;
    helper.render_options_section(&mut file)?;
    file.write_all(HELPER_SECTIONS.as_bytes())?;
    helper.render_version_section(&mut file)?;
    file.flush()
}

/// The mount subcommand as mount(8) runs it: `-f` is the helper's "fake", `--foreground` keeps its long name.
fn mount_helper_command() -> clap::Command {
    let command = clap::Command::new("mount.lakefs")
        .version(env!("CARGO_PKG_VERSION"))
        .about("mount helper for lakeFS: mount(8) runs it for `mount -t lakefs` and fstab entries of type lakefs")
        .long_about(
            "mount(8) runs mount.lakefs for `mount -t lakefs SOURCE DIR` and for /etc/fstab entries of type \
             lakefs. It is lakefs-fuse invoked under another name and behaves as `lakefs-fuse mount`: it checks \
             the source, the credentials and the mountpoint, mounts, and returns 0 only once the mount is live; \
             the filesystem is then served by a daemon that logs to syslog (or to log_file=). SOURCE is \
             lakefs:// (every repository), lakefs://REPO (its branches) or lakefs://REPO/REF[/PREFIX] (one ref).",
        );
    MountArgs::augment_args(command)
        .mut_arg("foreground", |a| a.short(None))
        .mut_arg("fake", |a| {
            a.hide(false)
                .short('f')
                .help("Fake: check the arguments and options, mount nothing, exit 0")
        })
        .mut_arg("sloppy", |a| {
            a.hide(false).help("Sloppy: accepted; unknown options are still errors")
        })
        .mut_arg("no_mtab", |a| {
            a.hide(false).help("No mtab: accepted (there is no mtab to write)")
        })
        .mut_arg("verbose", |a| a.hide(false).help("Verbose: accepted"))
}

const HELPER_SECTIONS: &str = r#".SH FSTAB
A line such as
.PP
.RS
.nf
lakefs://repo/main  /mnt/lake  lakefs  noauto,_netdev,config=/etc/lakefs-fuse/lakectl.yaml  0  0
.fi
.RE
.PP
lets
.B mount /mnt/lake
(and systemd, without
.BR noauto )
mount the branch. Generic options (rw, ro, defaults, auto, noauto, _netdev, nofail, user, users, x\-systemd.*,
comment=) are accepted;
.B ro
mounts read-only. Unknown options are errors.
.SH CREDENTIALS
Never put the secret on a command line or in fstab:
.B ps
and
.B /proc/mounts
show them. Use
.BI config= PATH
naming a lakectl configuration file. A file that holds a secret must be readable by its owner only
(chmod 600); otherwise the mount is refused.
.SH LOGGING
The mount daemon logs to syslog (ident lakefs\-fuse, facility daemon; see
.BR "journalctl \-t lakefs\-fuse" ).
With
.BI log_file= PATH
it appends to PATH instead.
.B debug
logs every FUSE request and lakeFS call.
.SH FILES
.TP
.I /etc/lakefs-fuse/lakectl.yaml
connection settings for system mounts (see lakectl.yaml.example there)
.TP
.I ~/.lakectl.yaml
default connection settings
.TP
.I /lib/systemd/system/lakefs-fuse@.service
systemd template unit: lakefs-fuse@NAME mounts what /etc/lakefs-fuse/NAME.conf describes
.SH EXAMPLES
.nf
mount \-t lakefs lakefs://repo/main /mnt/lake \-o config=/etc/lakefs-fuse/lakectl.yaml
umount /mnt/lake
.fi
.SH "SEE ALSO"
.BR lakefs\-fuse (1),
.BR lakefs\-fuse\-mount (1),
.BR mount (8),
.BR fstab (5),
.BR systemd.mount (5)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_completions_are_written() {
        let dir = tempfile::tempdir().unwrap();
        generate_man(dir.path()).unwrap();
        for page in [
            "lakefs-fuse.1",
            "lakefs-fuse-mount.1",
            "lakefs-fuse-serve.1",
            "lakefs-fuse-commit.1",
            "lakefs-fuse-merge.1",
            "lakefs-fuse-status.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(
                text.starts_with(".ie"),
                "{page} is roff: {}",
                &text[..40.min(text.len())]
            );
        }
        assert!(
            !dir.path().join("lakefs-fuse-generate.1").exists(),
            "hidden commands get no page"
        );
        let merge = std::fs::read_to_string(dir.path().join("lakefs-fuse-merge.1")).unwrap();
        assert!(
            merge.contains("source\\-wins") && merge.contains("\\-\\-into"),
            "{merge}"
        );
        let commit = std::fs::read_to_string(dir.path().join("lakefs-fuse-commit.1")).unwrap();
        assert!(
            commit.contains("rejected by a hook"),
            "exit codes are documented: {commit}"
        );
        let helper = std::fs::read_to_string(dir.path().join("mount.lakefs.8")).unwrap();
        assert!(helper.contains(".TH mount.lakefs 8"), "{helper}");
        assert!(helper.contains("Fake") && helper.contains(".SH FSTAB"));

        generate_completions(dir.path()).unwrap();
        for file in ["lakefs-fuse.bash", "_lakefs-fuse", "lakefs-fuse.fish"] {
            let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
            assert!(text.contains("mount") && text.contains("serve"), "{file}");
        }
    }
}
