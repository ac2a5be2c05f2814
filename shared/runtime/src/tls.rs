//! TLS for the public listener, through openssl.

use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod};

use crate::config::TlsConfig;

/// An acceptor with Mozilla's intermediate settings, the configured certificate chain and
/// key, and ALPN for HTTP/2 and HTTP/1.1.
pub fn acceptor(config: &TlsConfig) -> anyhow::Result<SslAcceptorBuilder> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    builder
        .set_certificate_chain_file(&config.cert_file)
        .map_err(|e| {
            anyhow::anyhow!("cannot use certificate {}: {e}", config.cert_file.display())
        })?;
    builder
        .set_private_key_file(&config.key_file, SslFiletype::PEM)
        .map_err(|e| anyhow::anyhow!("cannot use key {}: {e}", config.key_file.display()))?;
    builder.check_private_key()?;
    Ok(builder)
}
