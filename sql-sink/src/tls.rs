//! TLS for PostgreSQL connections with `sslmode=require` (also spelled
//! `verify-ca` / `verify-full`): rustls with the ring provider, server
//! certificates verified against the system's trusted roots. Unlike libpq's
//! `require`, the certificate is always verified; for a server with a
//! self-signed certificate on a trusted network, use `sslmode=disable`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::error::Error;

/// Makes TLS connections for tokio-postgres.
#[derive(Clone)]
pub(crate) struct RustlsConnector {
    config: Arc<rustls::ClientConfig>,
}

impl RustlsConnector {
    /// A connector trusting the system's root certificates.
    pub(crate) fn with_system_roots() -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(Error::InvalidUrl {
                reason: "sslmode=require needs trusted root certificates, and none were found on this system \
                         (install ca-certificates or set SSL_CERT_FILE)"
                    .into(),
            });
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidUrl {
            reason: format!("TLS setup failed: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

/// Connects one stream.
pub(crate) struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<RustlsStream<S>>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            let tls = connector.connect(self.name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// An established TLS stream.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding is optional; the server falls back to plain SCRAM.
        ChannelBinding::none()
    }
}

/// tokio-postgres knows only disable/prefer/require; libpq URLs often say
/// `verify-ca` or `verify-full`, which this connector does anyway.
pub(crate) fn normalize_sslmode(url: &str) -> std::borrow::Cow<'_, str> {
    if url.contains("sslmode=verify-full") || url.contains("sslmode=verify-ca") {
        url.replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require")
            .into()
    } else {
        url.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_verify_modes_map_to_require() {
        assert_eq!(
            normalize_sslmode("postgresql://h/db?sslmode=verify-full"),
            "postgresql://h/db?sslmode=require"
        );
        assert_eq!(
            normalize_sslmode("postgresql://h/db?sslmode=verify-ca"),
            "postgresql://h/db?sslmode=require"
        );
        assert_eq!(
            normalize_sslmode("postgresql://h/db?sslmode=prefer"),
            "postgresql://h/db?sslmode=prefer"
        );
    }
}
