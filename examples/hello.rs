//! The ceiling for `scripts/bench-dashboard.sh`: axum on the same runtime
//! settings as plangraph, answering every request with a constant, so the
//! benchmark shows what HTTP alone costs on this machine.
//!
//! Usage: `cargo run --release --example hello -- 127.0.0.1:8082`

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::any;

const BODY: &str = r#"{"data":{"hello":"world"}}"#;

async fn hello() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8082".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!(
        "hello listening on http://{}/graphql",
        listener.local_addr()?
    );
    let app = Router::new().fallback(any(hello));
    axum::serve(listener, app).await?;
    Ok(())
}
