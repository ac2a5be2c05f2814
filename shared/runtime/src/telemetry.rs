//! Logging through `tracing`: JSON lines by default, readable text on request.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogConfig, LogFormat};

/// Libraries that log credentials below `warn`, whatever the configured level:
/// yup-oauth2 logs token requests and answers (access tokens) at debug.
const CREDENTIAL_LOGGERS: [&str; 1] = ["yup_oauth2=warn"];

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
/// Calling it twice is harmless (the second call does nothing), so tests may call it.
pub fn init(config: &LogConfig) {
    let filter = filter(EnvFilter::try_from_default_env().ok(), &config.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The level from `RUST_LOG` or the configuration, with the credential loggers held back.
fn filter(from_env: Option<EnvFilter>, level: &str) -> EnvFilter {
    let filter = from_env
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // The directives are constants; the test below proves they parse.
    CREDENTIAL_LOGGERS
        .iter()
        .filter_map(|directive| directive.parse().ok())
        .fold(filter, EnvFilter::add_directive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_loggers_stay_quiet_even_at_trace() {
        for level in ["trace", "debug,yup_oauth2=trace", "not a level"] {
            let directives = filter(None, level).to_string();
            assert!(
                directives.contains("yup_oauth2=warn"),
                "{level}: {directives}"
            );
            assert!(
                !directives.contains("yup_oauth2=trace"),
                "{level}: {directives}"
            );
        }
    }
}
