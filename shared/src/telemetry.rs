//! Tracing set-up shared by both binaries: `RUST_LOG` filter, pretty or JSON lines on stdout.

use tracing_subscriber::EnvFilter;

pub fn init(log_format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = if log_format.eq_ignore_ascii_case("json") {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
}
