//! The signed-in Matrix account: where its local store lives, password
//! sign-in (homeserver URL or server name resolved through .well-known), and
//! reuse of this installation's device id so its encryption keys carry over.

use std::path::{Path, PathBuf};

use matrix_sdk::{
    authentication::matrix::MatrixSession, ruma::api::error::ErrorKind, Client, ClientBuildError,
    HttpError,
};
use thiserror::Error;

use crate::{
    store_key::{self, Fallback},
    trust,
};

/// What can go wrong while opening or signing in an account.
#[derive(Debug, Error)]
pub enum AccountError {
    #[error("homeserver {server} is unreachable or is not a Matrix homeserver: {source}")]
    Unreachable {
        server: String,
        #[source]
        source: ClientBuildError,
    },
    #[error("wrong user name or password for {user}")]
    WrongPassword { user: String },
    #[error("the homeserver refused the sign-in for {user}: {message}")]
    Refused { user: String, message: String },
    #[error("cannot reach the homeserver: {0}")]
    Http(#[source] Box<HttpError>),
    #[error("local account data in {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Matrix(#[from] Box<matrix_sdk::Error>),
    #[error(transparent)]
    StoreKey(#[from] crate::store_key::StoreKeyError),
    #[error("setting up encryption trust: {0}")]
    Trust(#[from] crate::trust::TrustError),
}

/// Everything needed to sign in with a password.
#[derive(Debug, Clone)]
pub struct SignInRequest {
    /// A homeserver URL (`http://127.0.0.1:8008`) or a server name
    /// (`example.org`) that is resolved through `.well-known`.
    pub server: String,
    /// Localpart (`alice`) or full user id (`@alice:example.org`).
    pub user: String,
    pub password: String,
    /// Shown to other users' clients as this device's name.
    pub device_display_name: String,
}

/// A signed-in account with its own on-disk store directory.
#[derive(Debug, Clone)]
pub struct Account {
    client: Client,
    data_dir: PathBuf,
    store_passphrase: String,
    /// Set by a sign-in that created the account's cross-signing identity:
    /// the recovery key, to show the user once.
    new_recovery_key: Option<String>,
}

const DEVICE_ID_FILE: &str = "device_id";
const STORE_DIR: &str = "matrix-store";

impl Account {
    /// Signs in with a password. `data_dir` holds this installation's
    /// matrix-sdk SQLite store (crypto keys included) and the device id it
    /// belongs to; signing in again with the same `data_dir` reuses that
    /// device instead of creating a new one.
    ///
    /// The store is encrypted with a passphrase from the OS keyring (or,
    /// where `fallback` allows, a 0600 file; see [`crate::store_key`]). If
    /// the account has no cross-signing identity yet, one is created with
    /// recovery ([`Account::new_recovery_key`]).
    pub async fn sign_in(
        data_dir: &Path,
        req: &SignInRequest,
        fallback: Fallback,
    ) -> Result<Self, AccountError> {
        let io = |source| AccountError::Io {
            path: data_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let store_dir = data_dir.join(STORE_DIR);
        let store_passphrase = store_key::passphrase(data_dir, &store_dir, fallback).await?;
        let client = builder_for(&req.server)
            .sqlite_store(&store_dir, Some(&store_passphrase))
            .build()
            .await
            .map_err(|source| AccountError::Unreachable {
                server: req.server.clone(),
                source,
            })?;

        let device_id_path = data_dir.join(DEVICE_ID_FILE);
        let known_device = match std::fs::read_to_string(&device_id_path) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };

        let mut login = client
            .matrix_auth()
            .login_username(&req.user, &req.password)
            .initial_device_display_name(&req.device_display_name);
        if let Some(device) = &known_device {
            login = login.device_id(device);
        }
        let response = login.send().await.map_err(|e| login_error(&req.user, e))?;
        if known_device.as_deref() != Some(response.device_id.as_str()) {
            std::fs::write(&device_id_path, response.device_id.as_str()).map_err(io)?;
        }
        tracing::info!(
            user = %response.user_id,
            device = %response.device_id,
            homeserver = %client.homeserver(),
            "signed in"
        );
        let new_recovery_key = trust::set_up_at_sign_in(&client, &req.password).await?;
        Ok(Self {
            client,
            data_dir: data_dir.to_owned(),
            store_passphrase,
            new_recovery_key,
        })
    }

    /// Restores a session saved from [`Account::session`] without signing
    /// in again (same device, same store).
    pub async fn restore(
        data_dir: &Path,
        homeserver: &str,
        session: MatrixSession,
        fallback: Fallback,
    ) -> Result<Self, AccountError> {
        let store_dir = data_dir.join(STORE_DIR);
        let store_passphrase = store_key::passphrase(data_dir, &store_dir, fallback).await?;
        let client = Client::builder()
            .homeserver_url(homeserver)
            .sqlite_store(&store_dir, Some(&store_passphrase))
            .build()
            .await
            .map_err(|source| AccountError::Unreachable {
                server: homeserver.to_owned(),
                source,
            })?;
        client
            .matrix_auth()
            .restore_session(session, Default::default())
            .await
            .map_err(|e| AccountError::Matrix(Box::new(e)))?;
        Ok(Self {
            client,
            data_dir: data_dir.to_owned(),
            store_passphrase,
            new_recovery_key: None,
        })
    }

    /// The recovery key of the cross-signing identity this sign-in created,
    /// if it created one, handed over once to be shown: Walkie keeps no
    /// copy (this account, and any clone made after, no longer holds it).
    pub fn take_new_recovery_key(&mut self) -> Option<String> {
        self.new_recovery_key.take()
    }

    /// The key that seals this account's outbox journals (derived from the
    /// store passphrase).
    pub fn journal_cipher(&self) -> crate::engine::journal_cipher::JournalCipher {
        crate::engine::journal_cipher::JournalCipher::from_passphrase(&self.store_passphrase)
    }

    /// The directory of this device's matrix-sdk store.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join(STORE_DIR)
    }

    /// Signs consent entries with this device's key (see
    /// [`trust::ConsentSigner`]).
    pub async fn consent_signer(&self) -> Result<trust::ConsentSigner, trust::TrustError> {
        trust::ConsentSigner::open(&self.store_dir(), &self.store_passphrase).await
    }

    /// The session (user, device, access token) to save for [`Account::restore`].
    /// It holds a secret: store it only where secrets belong.
    pub fn session(&self) -> Option<MatrixSession> {
        self.client.matrix_auth().session()
    }

    /// The matrix-sdk client, for the engine and for tests that read the
    /// homeserver independently. Shells use the methods below instead.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The homeserver's client-server API base URL.
    pub fn homeserver(&self) -> String {
        self.client.homeserver().to_string()
    }

    /// Logs this device out at the homeserver. Deleting local data is the
    /// caller's (the CLI removes its data directory, the app its account
    /// directory and keyring entry); a homeserver that does not answer is
    /// logged, not fatal, so a user can always sign out locally.
    pub async fn sign_out(&self) {
        if let Err(e) = self.client.matrix_auth().logout().await {
            tracing::warn!(error = %e, "the homeserver did not take the logout; deleting local data anyway");
        }
        store_key::forget(&self.data_dir).await;
    }

    /// Creates a private, encrypted walkie group `name` with `group`'s
    /// settings, inviting `invite` (full user ids). Returns its room id.
    pub async fn create_group(
        &self,
        name: &str,
        invite: &[String],
        group: &walkie_protocol::WalkieGroup,
    ) -> Result<String, crate::EngineError> {
        let invite = invite
            .iter()
            .map(|u| {
                matrix_sdk::ruma::OwnedUserId::try_from(u.as_str())
                    .map_err(|_| walkie_protocol::ProtocolError::InvalidUserId(u.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let request = crate::engine::room_state::create_request(name, invite, group)?;
        let room = self.client.create_room(request).await?;
        Ok(room.room_id().to_string())
    }

    /// Joins a room by id or alias (accepting an invite). Returns its id.
    pub async fn join(&self, room: &str) -> Result<String, crate::EngineError> {
        let id = matrix_sdk::ruma::OwnedRoomOrAliasId::try_from(room)
            .map_err(|_| crate::EngineError::UnknownRoom(format!("bad room {room}")))?;
        let joined = self
            .client
            .join_room_by_id_or_alias(&id, &[])
            .await
            .map_err(|e| crate::EngineError::UnknownRoom(format!("cannot join {room}: {e}")))?;
        Ok(joined.room_id().to_string())
    }

    /// How many rooms this account has joined.
    pub fn joined_room_count(&self) -> usize {
        self.client.joined_rooms().len()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The full user id, e.g. `@alice:example.org`.
    pub fn user_id(&self) -> String {
        self.client
            .user_id()
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    pub fn device_id(&self) -> String {
        self.client
            .device_id()
            .map(|d| d.to_string())
            .unwrap_or_default()
    }
}

/// A client builder for `server`: a URL (`http(s)://…`) is the homeserver
/// as given, with no `.well-known` lookup (which would only 404 on most
/// URLs); a bare server name is resolved through `.well-known`.
fn builder_for(server: &str) -> matrix_sdk::ClientBuilder {
    if server.starts_with("http://") || server.starts_with("https://") {
        Client::builder().homeserver_url(server)
    } else {
        Client::builder().server_name_or_homeserver_url(server)
    }
}

fn login_error(user: &str, e: matrix_sdk::Error) -> AccountError {
    match e.client_api_error_kind() {
        Some(ErrorKind::Forbidden) => AccountError::WrongPassword {
            user: user.to_owned(),
        },
        Some(kind) => AccountError::Refused {
            user: user.to_owned(),
            message: match e.as_client_api_error() {
                Some(api) => api.to_string(),
                None => kind.errcode().to_string(),
            },
        },
        None => match e {
            matrix_sdk::Error::Http(http) if !matches!(*http, HttpError::Api(_)) => {
                AccountError::Http(http)
            }
            other => AccountError::Matrix(Box::new(other)),
        },
    }
}

/// What a server name or URL resolves to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerInfo {
    /// The client-server API base URL (after `.well-known` discovery).
    pub homeserver: String,
    /// Matrix spec versions the homeserver supports.
    pub versions: Vec<String>,
}

/// Resolves `server` (a URL as given, a server name through `.well-known`) and asks
/// the homeserver which spec versions it supports.
pub async fn discover(server: &str) -> Result<ServerInfo, AccountError> {
    let client = builder_for(server)
        .build()
        .await
        .map_err(|source| AccountError::Unreachable {
            server: server.to_owned(),
            source,
        })?;
    let versions = client
        .server_versions()
        .await
        .map_err(|e| AccountError::Http(Box::new(e)))?
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    Ok(ServerInfo {
        homeserver: client.homeserver().to_string(),
        versions,
    })
}
