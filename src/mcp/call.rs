//! What every tool call shares: arguments parsed into a tool error the model
//! can correct, and the two kinds of result (the seed's text with structured
//! JSON, or a refusal starting with its code); their schemas are in
//! [`super::schema`].

use std::future::Future;
use std::time::Instant;

use axum::http::request::Parts;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, json};

use super::Tools;
use super::views::Text;
use crate::error::{AppError, AppResult, Interface};
use crate::observability;
use crate::service::Viewer;

/// A tool's success: the seed's text for people and the JSON for programs.
pub(super) struct Reply {
    text: String,
    data: serde_json::Value,
}

impl Reply {
    pub(super) fn new(text: &Text, data: &impl Serialize) -> AppResult<Reply> {
        let data = serde_json::to_value(data)
            .map_err(|error| AppError::internal_from("cannot serialize a tool result", error))?;
        Ok(Reply {
            text: text.finish(),
            data,
        })
    }

    fn into_result(self) -> CallToolResult {
        let mut result = CallToolResult::structured(self.data);
        result.content = vec![ContentBlock::text(self.text)];
        result
    }
}

/// A tool error the assistant sees and can act on (`isError: true`), in the
/// seed's words: its text starts with the code (`CONFLICT: Plan already
/// claimed by another user`), and its structured content holds the same
/// code and message with the facts a program acts on:
/// `{"error": {"code", "message", "current_status", …}}`, the
/// [`ToolError`](super::schema::ToolError) every output schema allows.
pub(super) fn error_result(error: &AppError) -> CallToolResult {
    error.log_if_internal("mcp tool call");
    let message = error.message_for(Interface::Mcp);
    // `CONFLICT (STALE_CLAIM): …`: an agent that reads only the text learns
    // the reason as well as the code.
    let text = match error.reason() {
        Some(reason) => format!("{} ({reason}): {message}", error.code()),
        None => format!("{}: {message}", error.code()),
    };
    let mut fields = Map::new();
    fields.insert("code".into(), error.code().into());
    fields.insert("message".into(), message.into());
    fields.extend(error.details(Interface::Mcp));
    let mut result = CallToolResult::structured_error(json!({ "error": fields }));
    result.content = vec![ContentBlock::text(text)];
    result
}

/// Arguments are parsed here rather than by rmcp's `Parameters` so that a
/// malformed call is a tool error (`BAD_USER_INPUT: …`) the model reads and
/// corrects, not a JSON-RPC error that clients tend to hide from it.
pub(super) fn parse_arguments<A: DeserializeOwned>(
    tool: &str,
    arguments: JsonObject,
) -> AppResult<A> {
    serde_json::from_value(serde_json::Value::Object(arguments)).map_err(|error| {
        AppError::BadUserInput(format!(
            "Invalid arguments for {tool}: {error}; see the tool's input schema"
        ))
    })
}

impl Tools {
    /// Parses the arguments, finds the caller, runs `work` and turns its
    /// outcome into a tool result; every tool goes through here.
    pub(super) async fn run<A, F, Fut>(
        &self,
        tool: &'static str,
        request: &Parts,
        arguments: JsonObject,
        work: F,
    ) -> CallToolResult
    where
        A: DeserializeOwned,
        F: FnOnce(Viewer, A) -> Fut,
        Fut: Future<Output = AppResult<Reply>>,
    {
        let started = Instant::now();
        let outcome = async {
            let args = parse_arguments::<A>(tool, arguments)?;
            let viewer = self.viewer(request).await?;
            work(viewer, args).await
        }
        .await;
        let error = outcome.as_ref().err().map(AppError::code);
        observability::record_tool_call(tool, started.elapsed(), error);
        match outcome {
            Ok(reply) => reply.into_result(),
            Err(error) => error_result(&error),
        }
    }

    /// The caller: the API key's user, which `/mcp`'s middleware authenticated
    /// from this very request's `Authorization` header and left in its
    /// extensions. Should the tools ever be served without that middleware,
    /// the header is authenticated here instead, so no call runs anonymously.
    async fn viewer(&self, request: &Parts) -> AppResult<Viewer> {
        match request.extensions.get::<Viewer>() {
            Some(viewer) => Ok(viewer.clone()),
            None => super::authenticate(&self.services, &request.headers).await,
        }
    }

    /// A spec document from the store, as `Plan.spec` and `Feature.spec` read it.
    pub(super) async fn spec_text(&self, key: &str) -> AppResult<String> {
        let bytes = self.services.specs.get(key).await?;
        Ok(crate::storage::spec_text(&bytes))
    }
}
