//! Where the control plane is and which token to use: `EC_URL` / `EC_TOKEN`, else the file
//! `contain login` wrote (`$XDG_CONFIG_HOME/edge-containment/cli.json`, else
//! `~/.config/edge-containment/cli.json`), readable by its owner only.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::Failure;

/// What `contain login` keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub url: String,
    pub token: String,
}

/// The URL and token in use, and where each came from (named in error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub url: String,
    pub token: String,
    pub url_from: String,
    pub token_from: String,
}

/// The config file's path from `XDG_CONFIG_HOME` and `HOME` (as given in the environment).
pub fn path_from(xdg: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let base = match xdg.filter(|x| Path::new(x).is_absolute()) {
        Some(x) => PathBuf::from(x),
        None => Path::new(home.filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("edge-containment").join("cli.json"))
}

pub fn path() -> Result<PathBuf, Failure> {
    let xdg = std::env::var("XDG_CONFIG_HOME").ok();
    let home = std::env::var("HOME").ok();
    path_from(xdg.as_deref(), home.as_deref()).ok_or_else(|| {
        Failure::Local("neither XDG_CONFIG_HOME nor HOME is set: set EC_URL and EC_TOKEN".into())
    })
}

/// Env beats file, each of the two on its own. The file is read only when the env does
/// not give both.
pub fn resolve(
    env_url: Option<String>,
    env_token: Option<String>,
    file: impl FnOnce() -> Result<Option<(Saved, PathBuf)>, Failure>,
) -> Result<Credentials, Failure> {
    let env_url = env_url.filter(|s| !s.trim().is_empty());
    let env_token = env_token.filter(|s| !s.trim().is_empty());
    let saved = if env_url.is_some() && env_token.is_some() {
        None
    } else {
        file()?
    };
    let from_file = |p: &PathBuf| p.display().to_string();
    let (url, url_from) = match (env_url, &saved) {
        (Some(u), _) => (u, "EC_URL".to_string()),
        (None, Some((s, p))) => (s.url.clone(), from_file(p)),
        (None, None) => {
            return Err(Failure::Local(
                "not logged in: run `contain login --url URL` or set EC_URL and EC_TOKEN".into(),
            ))
        }
    };
    let (token, token_from) = match (env_token, &saved) {
        (Some(t), _) => (t, "EC_TOKEN".to_string()),
        (None, Some((s, p))) => (s.token.clone(), from_file(p)),
        (None, None) => {
            return Err(Failure::Local(
                "no token: set EC_TOKEN or run `contain login --url URL`".into(),
            ))
        }
    };
    Ok(Credentials {
        url: url.trim().trim_end_matches('/').to_string(),
        token: token.trim().to_string(),
        url_from,
        token_from,
    })
}

/// The credentials in force now.
pub fn current() -> Result<Credentials, Failure> {
    resolve(
        std::env::var("EC_URL").ok(),
        std::env::var("EC_TOKEN").ok(),
        || {
            let p = path()?;
            Ok(load(&p)?.map(|s| (s, p)))
        },
    )
}

/// Why a file with this mode may not be used (a token others can read is a leaked token).
pub fn mode_problem(mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| format!("mode {:04o}: others can read it", mode & 0o7777))
}

/// The saved file, `None` when there is none. Refused when group or others may read it.
pub fn load(p: &Path) -> Result<Option<Saved>, Failure> {
    let meta = match fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::Local(format!("{}: {e}", p.display()))),
    };
    if let Some(why) = mode_problem(meta.mode()) {
        return Err(Failure::Local(format!(
            "refusing to use {} ({why}): run `chmod 600 {}`, or `contain login` again",
            p.display(),
            p.display()
        )));
    }
    let text =
        fs::read_to_string(p).map_err(|e| Failure::Local(format!("{}: {e}", p.display())))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Failure::Local(format!("{}: not a contain config file: {e}", p.display())))
}

/// Write `saved` to `p` atomically: a new file created with mode 0600 in the same
/// directory (itself made 0700 when missing), then renamed over the old one.
pub fn save(p: &Path, saved: &Saved) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Local(format!("{}: {e}", p.display()));
    let dir = p
        .parent()
        .ok_or_else(|| Failure::Local(format!("{}: no parent directory", p.display())))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let tmp = dir.join(format!(".cli.json.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    let body = serde_json::to_vec_pretty(saved).expect("serialisable");
    let written = f
        .write_all(&body)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.set_permissions(fs::Permissions::from_mode(0o600)))
        .and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, p)) {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Saved {
        Saved {
            url: "http://file:1/".into(),
            token: "ecp_file".into(),
        }
    }

    #[test]
    fn the_path_follows_xdg_then_home() {
        assert_eq!(
            path_from(Some("/x"), Some("/home/a")).unwrap(),
            Path::new("/x/edge-containment/cli.json")
        );
        // A relative XDG_CONFIG_HOME is ignored, as the spec says.
        assert_eq!(
            path_from(Some("rel"), Some("/home/a")).unwrap(),
            Path::new("/home/a/.config/edge-containment/cli.json")
        );
        assert_eq!(path_from(None, None), None);
    }

    #[test]
    fn env_beats_the_file_each_on_its_own() {
        let p = PathBuf::from("/c/cli.json");
        let file = || Ok(Some((saved(), p.clone())));
        let c = resolve(None, None, file).unwrap();
        assert_eq!(
            (c.url.as_str(), c.token.as_str()),
            ("http://file:1", "ecp_file")
        );
        assert_eq!(c.url_from, "/c/cli.json");
        let c = resolve(Some("http://env:2".into()), None, file).unwrap();
        assert_eq!(
            (c.url.as_str(), c.token.as_str()),
            ("http://env:2", "ecp_file")
        );
        assert_eq!(
            (c.url_from.as_str(), c.token_from.as_str()),
            ("EC_URL", "/c/cli.json")
        );
        let c = resolve(None, Some("ecp_env".into()), file).unwrap();
        assert_eq!(
            (c.url.as_str(), c.token.as_str()),
            ("http://file:1", "ecp_env")
        );
        // Both in the env: the file is not even read (a bad one does not matter).
        let c = resolve(Some("http://env:2".into()), Some("ecp_env".into()), || {
            Err(Failure::Local("unreadable".into()))
        })
        .unwrap();
        assert_eq!(c.token_from, "EC_TOKEN");
        // Blank env values count as unset.
        let c = resolve(Some(" ".into()), Some(String::new()), file).unwrap();
        assert_eq!(c.token, "ecp_file");
    }

    #[test]
    fn nothing_configured_says_how_to_log_in() {
        let e = resolve(None, None, || Ok(None)).unwrap_err();
        assert!(e.to_string().contains("contain login"), "{e}");
        let e = resolve(Some("http://env:2".into()), None, || Ok(None)).unwrap_err();
        assert!(e.to_string().contains("EC_TOKEN"), "{e}");
    }

    #[test]
    fn only_owner_only_modes_are_accepted() {
        assert_eq!(mode_problem(0o100600), None);
        assert_eq!(mode_problem(0o100400), None);
        assert!(mode_problem(0o100640).unwrap().contains("0640"));
        assert!(mode_problem(0o100604).is_some());
    }

    #[test]
    fn save_writes_0600_and_load_refuses_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new").join("cli.json");
        save(&p, &saved()).unwrap();
        let mode = fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(p.parent().unwrap()).unwrap().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(load(&p).unwrap(), Some(saved()));
        // Saving again replaces it, still 0600, and leaves no temporary file.
        let other = Saved {
            url: "http://b:2".into(),
            token: "t2".into(),
        };
        save(&p, &other).unwrap();
        assert_eq!(load(&p).unwrap(), Some(other));
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("0644"), "{e}");
        assert_eq!(load(&dir.path().join("none.json")).unwrap(), None);
    }
}
