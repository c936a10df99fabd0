//! Start-up configuration of the app, from the environment.
//!
//! `WALKIE_HOMESERVER` (URL or server name), `WALKIE_USER` and
//! `WALKIE_PASSWORD` sign in at start; `WALKIE_DATA_DIR` overrides where the
//! account's local store lives (default: `$XDG_DATA_HOME/walkie`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
pub struct Credentials {
    pub homeserver: String,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub data_dir: PathBuf,
    /// `None`: nothing to sign in with; the panel says so.
    pub credentials: Option<Credentials>,
}

impl AppConfig {
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let data_dir = match var("WALKIE_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => match var("XDG_DATA_HOME") {
                Some(d) => PathBuf::from(d).join("walkie"),
                None => {
                    PathBuf::from(var("HOME").context("neither XDG_DATA_HOME nor HOME is set")?)
                        .join(".local/share/walkie")
                }
            },
        };
        let credentials = match (
            var("WALKIE_HOMESERVER"),
            var("WALKIE_USER"),
            var("WALKIE_PASSWORD"),
        ) {
            (Some(homeserver), Some(user), Some(password)) => Some(Credentials {
                homeserver,
                user,
                password,
            }),
            (None, None, None) => None,
            _ => bail!("set all of WALKIE_HOMESERVER, WALKIE_USER and WALKIE_PASSWORD, or none"),
        };
        Ok(Self {
            data_dir,
            credentials,
        })
    }
}
