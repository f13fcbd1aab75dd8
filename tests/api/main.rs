//! Black-box tests against the real `plangraph` binary, one module per area.
//! They are one test binary so that the server's library links once for the
//! whole suite, not once per area.

mod helpers;

mod agents;
mod authorization;
mod concurrency;
mod connections;
mod costs;
mod dashboard;
mod database_outage;
mod drift;
mod errors;
mod fanout;
mod fast_path;
mod fleet;
mod limits;
mod mcp;
mod migrations;
mod observability;
mod protocol;
mod refusals;
mod robustness;
mod server;
mod specs;
mod subscriptions;
mod use_cases;
mod webhooks;
mod websocket;
