//! Mount settings from their three sources: `-o` options and flags, the `LAKECTL_*` environment, and the lakectl
//! configuration file.
//!
//! `-o` takes the comma-separated options `mount(8)` and fstab pass; generic mount options that make no sense here
//! (`rw`, `defaults`, `noauto`, `_netdev`, `nofail`, `user`, `x-systemd.*`, ...) are accepted and ignored, so an
//! fstab line works unchanged; anything else unknown is an error rather than a silent surprise.
//!
//! Connection settings are resolved per field, highest priority first: flags / `-o`, then the environment
//! (`LAKECTL_SERVER_ENDPOINT_URL`, `LAKECTL_CREDENTIALS_ACCESS_KEY_ID`, `LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY`),
//! then the file named by `config=`, else `LAKECTL_CONFIG_FILE`, else `~/.lakectl.yaml`. The secret never needs to
//! be on a command line.
//!
//! A configuration file that holds a secret must be private to its owner: like ssh with a private key, the mount
//! refuses a file that its group or other users can access (mode & 0o077), and says how to fix it. A file without
//! a secret (endpoint only) may be shared.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::lakefs::retry::RetryPolicy;
use crate::lakefs::ClientConfig;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("unknown mount option {0:?}")]
    Unknown(String),
    #[error("mount option {option}: {reason}")]
    Invalid { option: String, reason: String },
    #[error("{0}")]
    Connection(String),
}

/// Everything `-o` and the long flags can set; `None` = not given. `Debug` never shows the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub config: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub file_mode: Option<u16>,
    pub dir_mode: Option<u16>,
    pub metadata_ttl: Option<Duration>,
    pub max_memory: Option<u64>,
    pub cache_dir: Option<PathBuf>,
    pub cache_size: Option<u64>,
    /// Bytes of written data staged locally at most.
    pub max_staging: Option<u64>,
    pub threads: Option<usize>,
    /// The kernel's readahead for the mount in KiB (`read_ahead_kb=`); 0 keeps the kernel's default.
    pub read_ahead_kb: Option<u32>,
    pub read_only: bool,
    /// Upload full parts of a file while it is written (DESIGN §3).
    pub upload_eager: Option<bool>,
    /// `close` waits for the upload and returns its error, instead of uploading in the background.
    pub sync_close: bool,
    pub allow_other: bool,
    pub debug: bool,
    /// Where a daemonized mount logs (appended); without it, a daemon logs to syslog.
    pub log_file: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`); none by default.
    pub metrics: Option<std::net::SocketAddr>,
    /// Deadline of one lakeFS call, retries included (`timeout=SECS`).
    pub timeout: Option<Duration>,
    /// Fault-injection spec for testing (`debug_faults=SPEC`, see `crate::lakefs::fault`); validated here.
    pub debug_faults: Option<String>,
}

impl std::fmt::Debug for MountOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountOptions")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("config", &self.config)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("file_mode", &self.file_mode)
            .field("dir_mode", &self.dir_mode)
            .field("metadata_ttl", &self.metadata_ttl)
            .field("max_memory", &self.max_memory)
            .field("cache_dir", &self.cache_dir)
            .field("cache_size", &self.cache_size)
            .field("max_staging", &self.max_staging)
            .field("threads", &self.threads)
            .field("read_ahead_kb", &self.read_ahead_kb)
            .field("read_only", &self.read_only)
            .field("allow_other", &self.allow_other)
            .field("debug", &self.debug)
            .field("log_file", &self.log_file)
            .field("metrics", &self.metrics)
            .field("timeout", &self.timeout)
            .field("debug_faults", &self.debug_faults)
            .finish()
    }
}

/// Generic options of mount(8)/fstab that do not concern this filesystem.
fn is_ignored_generic(option: &str) -> bool {
    const IGNORED: &[&str] = &[
        "rw",
        "defaults",
        "auto",
        "noauto",
        "_netdev",
        "nofail",
        "user",
        "users",
        "nouser",
        "owner",
        "group",
        "exec",
        "noexec",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "atime",
        "noatime",
        "relatime",
        "norelatime",
        "strictatime",
        "diratime",
        "nodiratime",
        "async",
        "sync",
        "default_permissions",
    ];
    IGNORED.contains(&option) || option.starts_with("x-") || option.starts_with("comment=")
}

/// `0644`, `644` or `0o644`.
pub fn parse_mode(value: &str) -> Result<u16, String> {
    let digits = value.trim_start_matches("0o");
    let mode = u16::from_str_radix(digits, 8).map_err(|_| format!("{value:?} is not an octal mode"))?;
    if mode > 0o7777 {
        return Err(format!("{value:?} is larger than 07777"));
    }
    Ok(mode)
}

/// `1s`, `500ms`, `2m`, or plain seconds (`1.5`).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(value.len()));
    let number: f64 = number.parse().map_err(|_| format!("{value:?} is not a duration"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{value:?}: unknown unit {unit:?}")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{value:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `1048576`, `512K`, `64M`, `1G`, `2GiB`, `1T`.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let split = value.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{value:?} is not a size"))?;
    let multiplier: u64 = match unit.to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{value:?}: unknown unit {unit:?}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{value:?} is too large"))
}

impl MountOptions {
    /// Apply one `-o` argument (comma-separated `key[=value]` items) over the current values.
    pub fn apply_o(&mut self, list: &str) -> Result<(), OptionsError> {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let invalid = |reason: String| OptionsError::Invalid {
                option: key.to_string(),
                reason,
            };
            let need = || value.map(str::to_string).ok_or_else(|| invalid("needs a value".into()));
            match key {
                "endpoint" => self.endpoint = Some(need()?),
                "access_key_id" => self.access_key_id = Some(need()?),
                "secret_access_key" => self.secret_access_key = Some(need()?),
                "config" => self.config = Some(PathBuf::from(need()?)),
                "uid" => self.uid = Some(need()?.parse().map_err(|_| invalid("not a number".into()))?),
                "gid" => self.gid = Some(need()?.parse().map_err(|_| invalid("not a number".into()))?),
                "file_mode" => self.file_mode = Some(parse_mode(&need()?).map_err(invalid)?),
                "dir_mode" => self.dir_mode = Some(parse_mode(&need()?).map_err(invalid)?),
                "metadata_ttl" => self.metadata_ttl = Some(parse_duration(&need()?).map_err(invalid)?),
                "max_memory" => self.max_memory = Some(parse_size(&need()?).map_err(invalid)?),
                "cache_dir" => self.cache_dir = Some(PathBuf::from(need()?)),
                "cache_size" => self.cache_size = Some(parse_size(&need()?).map_err(invalid)?),
                "max_staging" => self.max_staging = Some(parse_size(&need()?).map_err(invalid)?),
                "threads" => self.threads = Some(need()?.parse().map_err(|_| invalid("not a number".into()))?),
                "read_ahead_kb" => {
                    self.read_ahead_kb = Some(need()?.parse().map_err(|_| invalid("not a number of KiB".into()))?)
                }
                "read_only" | "ro" => self.read_only = true,
                "upload_eager" => {
                    self.upload_eager = Some(match value {
                        None | Some("on" | "true" | "1") => true,
                        Some("off" | "false" | "0") => false,
                        Some(other) => return Err(invalid(format!("{other:?}: expected on or off"))),
                    })
                }
                "sync_close" => self.sync_close = true,
                "allow_other" => self.allow_other = true,
                "debug" => self.debug = true,
                "log_file" => self.log_file = Some(PathBuf::from(need()?)),
                "metrics" => {
                    let address = need()?;
                    let address = address
                        .parse()
                        .map_err(|_| invalid(format!("{address:?} is not an address such as 127.0.0.1:9464")))?;
                    self.metrics = Some(address);
                }
                "timeout" => {
                    let limit = parse_duration(&need()?).map_err(invalid)?;
                    if limit.is_zero() {
                        return Err(invalid("must be more than 0".into()));
                    }
                    self.timeout = Some(limit);
                }
                "debug_faults" => {
                    let spec = need()?;
                    crate::lakefs::fault::FaultSpec::parse(&spec).map_err(|e| invalid(e.to_string()))?;
                    self.debug_faults = Some(spec);
                }
                _ if is_ignored_generic(key) || is_ignored_generic(item) => {}
                _ => return Err(OptionsError::Unknown(item.to_string())),
            }
        }
        Ok(())
    }
}

/// The subset of `~/.lakectl.yaml` the mount reads.
#[derive(Debug, Default, Deserialize)]
struct LakectlFile {
    #[serde(default)]
    credentials: LakectlCredentials,
    #[serde(default)]
    server: LakectlServer,
}

#[derive(Debug, Default, Deserialize)]
struct LakectlCredentials {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LakectlServer {
    endpoint_url: Option<String>,
}

fn read_lakectl_file(path: &Path) -> Result<LakectlFile, OptionsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OptionsError::Connection(format!("reading lakectl config {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(LakectlFile::default());
    }
    let file: LakectlFile = serde_yaml::from_str(&text)
        .map_err(|e| OptionsError::Connection(format!("parsing lakectl config {}: {e}", path.display())))?;
    if file
        .credentials
        .secret_access_key
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        check_private(path)?;
    }
    Ok(file)
}

/// Refuse a secret-holding file that anyone but its owner can access.
fn check_private(path: &Path) -> Result<(), OptionsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| OptionsError::Connection(format!("lakectl config {}: {e}", path.display())))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(OptionsError::Connection(format!(
            "lakectl config {path} holds a secret access key but its permissions {mode:04o} are too open \
             (group or others can access it); run `chmod 600 {path}`",
            path = path.display()
        )));
    }
    Ok(())
}

/// Resolve the connection settings (see the module docs). `env` looks up an environment variable; `home` is the
/// user's home directory.
pub fn resolve_connection(
    options: &MountOptions,
    env: impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<ClientConfig, OptionsError> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    // An explicitly named file must exist; the default one is optional.
    let named = options
        .config
        .clone()
        .or_else(|| env("LAKECTL_CONFIG_FILE").map(PathBuf::from));
    let file = match named {
        Some(path) => Some(read_lakectl_file(&path)?),
        None => match home.map(|h| h.join(".lakectl.yaml")) {
            Some(path) if path.exists() => Some(read_lakectl_file(&path)?),
            _ => None,
        },
    }
    .unwrap_or_default();
    let pick = |flag: &Option<String>, var: &str, from_file: &Option<String>| {
        flag.clone()
            .filter(|v| !v.is_empty())
            .or_else(|| env(var))
            .or_else(|| from_file.clone().filter(|v| !v.is_empty()))
    };
    let endpoint = pick(
        &options.endpoint,
        "LAKECTL_SERVER_ENDPOINT_URL",
        &file.server.endpoint_url,
    );
    let access_key_id = pick(
        &options.access_key_id,
        "LAKECTL_CREDENTIALS_ACCESS_KEY_ID",
        &file.credentials.access_key_id,
    );
    let secret_access_key = pick(
        &options.secret_access_key,
        "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
        &file.credentials.secret_access_key,
    );
    let missing = |what: &str, option: &str, var: &str| {
        OptionsError::Connection(format!(
            "no {what}: pass -o {option}=..., set {var}, or put it in ~/.lakectl.yaml (or the file named by config=)"
        ))
    };
    Ok(ClientConfig {
        endpoint: endpoint.ok_or_else(|| missing("lakeFS endpoint", "endpoint", "LAKECTL_SERVER_ENDPOINT_URL"))?,
        access_key_id: access_key_id
            .ok_or_else(|| missing("access key id", "access_key_id", "LAKECTL_CREDENTIALS_ACCESS_KEY_ID"))?,
        secret_access_key: secret_access_key.ok_or_else(|| {
            missing(
                "secret access key",
                "secret_access_key",
                "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
            )
        })?,
        retry: RetryPolicy {
            operation_timeout: options.timeout,
            ..RetryPolicy::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn o_options_parse_values_and_ignore_generic_ones() {
        let mut options = MountOptions::default();
        options
            .apply_o("rw,noauto,_netdev,nofail,defaults,x-systemd.automount,endpoint=http://h:8000,uid=1000")
            .unwrap();
        options
            .apply_o("file_mode=0640,dir_mode=750,metadata_ttl=500ms,max_memory=1G,read_only,allow_other")
            .unwrap();
        assert_eq!(options.endpoint.as_deref(), Some("http://h:8000"));
        assert_eq!(options.uid, Some(1000));
        assert_eq!(options.file_mode, Some(0o640));
        assert_eq!(options.dir_mode, Some(0o750));
        assert_eq!(options.metadata_ttl, Some(Duration::from_millis(500)));
        assert_eq!(options.max_memory, Some(1 << 30));
        assert!(options.read_only && options.allow_other && !options.debug);
        assert_eq!(options.upload_eager, None);
        assert_eq!(options.read_ahead_kb, None);
        options.apply_o("read_ahead_kb=4096").unwrap();
        assert_eq!(options.read_ahead_kb, Some(4096));
        assert!(
            options.apply_o("read_ahead_kb=1M").is_err(),
            "KiB, as the kernel's sysfs file takes"
        );
        options.apply_o("upload_eager").unwrap();
        assert_eq!(options.upload_eager, Some(true));
        options.apply_o("upload_eager=off").unwrap();
        assert_eq!(options.upload_eager, Some(false));
        assert!(options.apply_o("upload_eager=sometimes").is_err());
        assert!(!options.sync_close);
        options.apply_o("sync_close").unwrap();
        assert!(options.sync_close);
        assert_eq!(options.apply_o("bogus=1"), Err(OptionsError::Unknown("bogus=1".into())));
        assert!(matches!(options.apply_o("uid=abc"), Err(OptionsError::Invalid { .. })));
        assert!(matches!(options.apply_o("endpoint"), Err(OptionsError::Invalid { .. })));
    }

    #[test]
    fn values_parse_with_units() {
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("-1").is_err() && parse_duration("1y").is_err());
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("1X").is_err());
        assert!(parse_mode("8").is_err() && parse_mode("17777").is_err());
    }

    /// Write a config file the way a careful user does: readable by its owner only.
    fn write_private(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    const FILE: &str = "credentials:\n  access_key_id: FILEKEY\n  secret_access_key: FILESECRET\nserver:\n  endpoint_url: http://file:8000\n";

    #[test]
    fn the_lakectl_file_in_home_is_the_last_layer() {
        let home = tempfile::tempdir().unwrap();
        write_private(&home.path().join(".lakectl.yaml"), FILE);
        let config = resolve_connection(&MountOptions::default(), env(&[]), Some(home.path())).unwrap();
        assert_eq!(config.endpoint, "http://file:8000");
        assert_eq!(config.access_key_id, "FILEKEY");
        assert_eq!(config.secret_access_key, "FILESECRET");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let home = tempfile::tempdir().unwrap();
        write_private(&home.path().join(".lakectl.yaml"), FILE);
        let vars = env(&[
            ("LAKECTL_SERVER_ENDPOINT_URL", "http://env:1"),
            ("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "ENVKEY"),
        ]);
        let config = resolve_connection(&MountOptions::default(), vars, Some(home.path())).unwrap();
        assert_eq!(config.endpoint, "http://env:1");
        assert_eq!(config.access_key_id, "ENVKEY");
        assert_eq!(config.secret_access_key, "FILESECRET", "fields resolve independently");
    }

    #[test]
    fn flags_win_over_the_environment_and_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("named.yaml");
        write_private(&named, &FILE.replace("FILESECRET", "NAMEDSECRET"));
        let options = MountOptions {
            endpoint: Some("http://flag:2".into()),
            config: Some(named.clone()),
            ..MountOptions::default()
        };
        let vars = env(&[
            ("LAKECTL_SERVER_ENDPOINT_URL", "http://env:1"),
            ("LAKECTL_CONFIG_FILE", "/nonexistent"),
        ]);
        let config = resolve_connection(&options, vars, None).unwrap();
        assert_eq!(config.endpoint, "http://flag:2");
        assert_eq!(config.secret_access_key, "NAMEDSECRET");
        // LAKECTL_CONFIG_FILE is used when config= is absent, and must exist.
        let vars = env(&[("LAKECTL_CONFIG_FILE", named.to_str().unwrap())]);
        assert_eq!(
            resolve_connection(&MountOptions::default(), vars, None)
                .unwrap()
                .access_key_id,
            "FILEKEY"
        );
        let err = resolve_connection(
            &MountOptions::default(),
            env(&[("LAKECTL_CONFIG_FILE", "/nonexistent")]),
            None,
        );
        assert!(matches!(err, Err(OptionsError::Connection(_))));
    }

    #[test]
    fn a_secret_in_a_group_or_world_readable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lakectl.yaml");
        write_private(&path, FILE);
        let options = MountOptions {
            config: Some(path.clone()),
            ..MountOptions::default()
        };
        assert!(resolve_connection(&options, env(&[]), None).is_ok());
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = resolve_connection(&options, env(&[]), None).unwrap_err().to_string();
            assert!(err.contains("too open") && err.contains("chmod 600"), "{mode:o}: {err}");
        }
        // Without a secret the file may be shared.
        std::fs::write(&path, "server:\n  endpoint_url: http://file:8000\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let vars = env(&[
            ("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "K"),
            ("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "S"),
        ]);
        assert_eq!(
            resolve_connection(&options, vars, None).unwrap().endpoint,
            "http://file:8000"
        );
    }

    #[test]
    fn log_file_and_ro_parse() {
        let mut options = MountOptions::default();
        options.apply_o("ro,log_file=/var/log/lakefs-fuse/x.log,debug").unwrap();
        assert!(options.read_only && options.debug);
        assert_eq!(options.log_file, Some(PathBuf::from("/var/log/lakefs-fuse/x.log")));
        assert!(matches!(options.apply_o("log_file"), Err(OptionsError::Invalid { .. })));
    }

    #[test]
    fn timeout_and_debug_faults_parse() {
        let mut options = MountOptions::default();
        options
            .apply_o("timeout=5,debug_faults=seed=3+error=0.1+latency=0.5@10ms")
            .unwrap();
        assert_eq!(options.timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            options.debug_faults.as_deref(),
            Some("seed=3+error=0.1+latency=0.5@10ms")
        );
        assert!(matches!(
            options.apply_o("timeout=0"),
            Err(OptionsError::Invalid { .. })
        ));
        assert!(matches!(
            options.apply_o("debug_faults=bogus=1"),
            Err(OptionsError::Invalid { .. })
        ));
        let vars = env(&[
            ("LAKECTL_SERVER_ENDPOINT_URL", "http://h:1"),
            ("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "K"),
            ("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "S"),
        ]);
        let config = resolve_connection(&options, vars, None).unwrap();
        assert_eq!(config.retry.operation_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn missing_settings_say_how_to_provide_them() {
        let err = resolve_connection(&MountOptions::default(), env(&[]), None).unwrap_err();
        assert!(err.to_string().contains("LAKECTL_SERVER_ENDPOINT_URL"), "{err}");
    }
}
