//! Durable storage for rotating refresh tokens.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};

use crate::{Error, Result};

/// Where a rotating refresh token lives between runs.
///
/// D2L refresh tokens are single use: each refresh returns a new one, and the
/// old one stops working. [`RefreshTokenGrant`](super::RefreshTokenGrant)
/// saves the new token here *before* it hands out the access token, so a
/// crash can never leave only a spent token behind.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The stored refresh token, or `None` if nothing is stored yet.
    async fn load(&self) -> Result<Option<SecretString>>;

    /// Replaces the stored token durably; when this returns `Ok`, the new
    /// token survives a crash.
    async fn save(&self, refresh_token: &SecretString) -> Result<()>;
}

/// A token store in process memory (tests, or callers that persist the token
/// themselves).
#[derive(Default)]
pub struct MemoryTokenStore {
    token: Mutex<Option<SecretString>>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `token`.
    pub fn with_token(token: SecretString) -> Self {
        Self {
            token: Mutex::new(Some(token)),
        }
    }
}

impl fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryTokenStore([redacted])")
    }
}

#[async_trait::async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self) -> Result<Option<SecretString>> {
        Ok(self.token.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    async fn save(&self, refresh_token: &SecretString) -> Result<()> {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(refresh_token.clone());
        Ok(())
    }
}

/// A token store in a file holding just the token (surrounding whitespace is
/// ignored, so `echo "$TOKEN" > file` seeds it).
///
/// Saving is atomic and durable: the token is written to a temporary file in
/// the same directory (mode 0600 on Unix), flushed to disk, renamed over the
/// old file, and the directory is synced. A failure at any point leaves the
/// old file as it was and no temporary file behind.
///
/// ```no_run
/// # async fn demo() -> client_core::Result<()> {
/// use client_core::auth::{FileTokenStore, TokenStore};
/// use client_core::SecretString;
///
/// let store = FileTokenStore::new("/var/lib/sync/d2l-refresh-token");
/// store.save(&SecretString::from("rt-123")).await?;
/// assert!(store.load().await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    /// A store in the file at `path` (created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait::async_trait]
impl TokenStore for FileTokenStore {
    async fn load(&self) -> Result<Option<SecretString>> {
        let path = self.path.clone();
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => {
                let token = text.trim();
                Ok((!token.is_empty()).then(|| SecretString::from(token.to_string())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(
                format!("could not read the token store {}", path.display()),
                e,
            )),
        }
    }

    async fn save(&self, refresh_token: &SecretString) -> Result<()> {
        let path = self.path.clone();
        let content = format!("{}\n", refresh_token.expose_secret());
        let context = format!("could not save the refresh token to {}", path.display());
        tokio::task::spawn_blocking(move || {
            write_atomically(&path, |file| file.write_all(content.as_bytes()))
        })
        .await
        .map_err(|e| Error::io(context.clone(), std::io::Error::other(e.to_string())))?
        .map_err(|e| Error::io(context, e))
    }
}

/// Writes a file atomically: temp file in the same directory, `write`, fsync,
/// rename over `path`, fsync the directory. On error the temp file is removed
/// (by `NamedTempFile`'s drop) and `path` is untouched.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // tempfile creates the file with mode 0600 on Unix.
    let mut temp = tempfile::Builder::new()
        .prefix(".token-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    write(temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for syncing on this platform; the rename
    // itself is atomic.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_write_failing_midway_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "old-token\n").unwrap();
        let result = write_atomically(&path, |f| {
            f.write_all(b"new-tok")?; // half of the new content, then the disk fails
            Err(std::io::Error::other("disk full"))
        });
        assert_eq!(result.unwrap_err().to_string(), "disk full");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old-token\n");
        assert_eq!(names(dir.path()), vec!["token".to_string()]);
    }

    #[test]
    fn a_failing_rename_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // the target is a non-empty directory, so the rename cannot replace it
        let path = dir.path().join("token");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        assert!(write_atomically(&path, |f| f.write_all(b"new")).is_err());
        assert_eq!(names(dir.path()), vec!["token".to_string()]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn saved_file_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("rt"));
        assert!(store.load().await.unwrap().is_none());
        store.save(&SecretString::from("rt-1")).await.unwrap();
        store.save(&SecretString::from("rt-2")).await.unwrap();
        assert_eq!(store.load().await.unwrap().unwrap().expose_secret(), "rt-2");
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(names(dir.path()), vec!["rt".to_string()]);
    }
}
