//! The seed's plan tools over MCP at `/mcp`, driven by rmcp's own client
//! (Streamable HTTP) against the real server, as an AI assistant would.

use std::time::Duration;

use crate::helpers::*;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

/// Every tool the server offers: the seed's eight plus what plans need.
const TOOLS: [&str; 21] = [
    "claim_next_plan",
    "heartbeat_plan",
    "add_plan_dependency",
    "remove_plan_dependency",
    "set_plan_priority",
    "create_plan",
    "list_plans",
    "get_plan",
    "update_plan",
    "set_plan_status",
    "claim_plan",
    "release_plan",
    "submit_work",
    "create_feature",
    "list_features",
    "get_feature",
    "update_feature",
    "list_feature_versions",
    "list_projects",
    "get_spec_diff",
    "rebase_plan",
];

/// An MCP client acting with one API key.
struct Agent {
    client: RunningService<RoleClient, ()>,
}

impl Agent {
    async fn try_connect(
        server: &Server,
        key: &str,
    ) -> Result<Agent, rmcp::service::ClientInitializeError> {
        let config =
            StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.base_url))
                .auth_header(key);
        install_crypto_provider();
        let transport = StreamableHttpClientTransport::from_config(config);
        let client = ().serve(transport).await?;
        Ok(Agent { client })
    }

    async fn connect(server: &Server, client: &Client) -> Agent {
        Agent::try_connect(server, client.key())
            .await
            .expect("MCP handshake")
    }

    async fn tools(&self) -> Vec<Tool> {
        self.client.list_all_tools().await.expect("tools/list")
    }

    async fn call(&self, tool: &str, arguments: Value) -> CallToolResult {
        let Value::Object(arguments) = arguments else {
            panic!("tool arguments are a JSON object");
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        self.client
            .call_tool(params)
            .await
            .unwrap_or_else(|error| panic!("tools/call {tool} answered: {error}"))
    }

    /// A call that must succeed: its text and its structured content.
    async fn ok(&self, tool: &str, arguments: Value) -> (String, Value) {
        let result = self.call(tool, arguments).await;
        let text = text_of(&result);
        assert_ne!(result.is_error, Some(true), "{tool} failed: {text}");
        let data = result
            .structured_content
            .unwrap_or_else(|| panic!("{tool} returned no structured content: {text}"));
        (text, data)
    }

    /// A call that must be a tool error (`isError: true`): its text.
    async fn error(&self, tool: &str, arguments: Value) -> String {
        self.refusal(tool, arguments).await.0
    }

    /// A call that must be a tool error: its text and the `error` object of
    /// its structured content.
    async fn refusal(&self, tool: &str, arguments: Value) -> (String, Value) {
        let result = self.call(tool, arguments).await;
        let text = text_of(&result);
        assert_eq!(result.is_error, Some(true), "{tool} should fail: {text}");
        let error = result
            .structured_content
            .map(|content| content["error"].clone())
            .unwrap_or_else(|| panic!("{tool} refused without structured content: {text}"));
        // `CODE: message`, or `CODE (REASON): message` when a reason
        // tells refusals of one code apart.
        let code = match error["reason"].as_str() {
            Some(reason) => format!("{} ({reason})", error["code"].as_str().unwrap_or("?")),
            None => error["code"].as_str().unwrap_or("?").to_owned(),
        };
        assert_eq!(
            text,
            format!("{code}: {}", error["message"].as_str().unwrap_or("?")),
            "the text and the structured error say the same"
        );
        (text, error)
    }
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|content| content.as_text())
        .map(|content| content.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_lines(text: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            text.lines().any(|candidate| candidate == *line),
            "missing line {line:?} in:\n{text}"
        );
    }
}

/// The names in a JSON array of strings or the keys of an object, sorted.
fn names_in(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Value::Object(object) => object.keys().cloned().collect(),
        _ => Vec::new(),
    };
    names.sort_unstable();
    names
}

fn id_of(data: &Value) -> String {
    data["plan"]["id"].as_str().expect("plan id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_every_tool_with_its_schema() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let agent = Agent::connect(&server, &team.worker).await;

    let tools = agent.tools().await;

    let mut names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    names.sort_unstable();
    let mut expected = TOOLS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for tool in &tools {
        let description = tool.description.as_deref().unwrap_or_default();
        assert!(description.len() > 40, "{} needs a description", tool.name);
        let input = Value::Object((*tool.input_schema).clone());
        assert_eq!(input["type"], "object", "{}", tool.name);
        // Self-contained: some assistants' tool-calling APIs refuse `$ref`.
        assert!(
            !input.to_string().contains("$ref"),
            "{} input schema: {input}",
            tool.name
        );
        assert!(
            tool.output_schema.is_some(),
            "{} has an output schema",
            tool.name
        );
        let properties = input["properties"].as_object().cloned().unwrap_or_default();
        for (name, property) in properties {
            assert!(
                property["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{}.{name} needs a description",
                tool.name
            );
        }
    }
    let tool = |name: &str| {
        tools
            .iter()
            .find(|tool| tool.name == name)
            .expect("listed")
            .clone()
    };
    let create = tool("create_plan");
    let schema = Value::Object((*create.input_schema).clone());
    assert_eq!(
        names_in(&schema["required"]),
        ["feature_id", "spec_content", "title"]
    );
    assert_eq!(
        schema["properties"]["status"]["enum"],
        json!(["draft", "ready"])
    );
    assert_eq!(schema["properties"]["status"]["default"], "draft");
    assert_eq!(
        schema["properties"]["feature_id"]["description"],
        "UUID of the feature this plan implements"
    );
    assert!(create.description.unwrap_or_default().starts_with(
        "Create a new implementation plan for a feature. Plans contain technical specifications"
    ));
    let set_status = Value::Object((*tool("set_plan_status").input_schema).clone());
    assert_eq!(
        set_status["properties"]["status"]["enum"],
        json!([
            "draft",
            "ready",
            "claimed",
            "in_progress",
            "stalled",
            "review",
            "completed",
            "failed"
        ])
    );
    let submit = Value::Object((*tool("submit_work").input_schema).clone());
    assert_eq!(
        submit["properties"]["status"]["enum"],
        json!(["review", "completed"])
    );
    assert_eq!(
        names_in(&submit["required"]),
        ["artifacts_markdown", "plan_id", "status"]
    );
    let list = Value::Object((*tool("list_plans").input_schema).clone());
    assert_eq!(
        names_in(&list["properties"]),
        [
            "after",
            "blocked",
            "blocked_by_failed",
            "claimed_by",
            "drifted",
            "feature_id",
            "priority",
            "project_id",
            "status_filter"
        ]
    );
    assert_eq!(names_in(&list["required"]), Vec::<String>::new());
    let update_feature = Value::Object((*tool("update_feature").input_schema).clone());
    assert_eq!(
        names_in(&update_feature["required"]),
        ["feature_id", "spec_content"]
    );
    assert_eq!(
        update_feature["properties"]["new_version"]["default"],
        false
    );
    let read_only = |name: &str| {
        tool(name)
            .annotations
            .and_then(|annotations| annotations.read_only_hint)
    };
    assert_eq!(read_only("get_plan"), Some(true));
    assert_eq!(read_only("list_plans"), Some(true));
    assert_eq!(read_only("claim_plan"), None);
}

/// The seed's "Common Use Cases", each through MCP tool calls only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_use_cases_run_end_to_end() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let owner = Agent::connect(&server, &team.owner).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let spec = "# OAuth 2.0 Implementation Plan\n\n## Technical Approach\nUse Passport.js.";

    // Creating and publishing plans.
    let (text, data) = owner
        .ok(
            "create_plan",
            json!({
                "feature_id": team.feature,
                "title": "OAuth 2.0 Implementation",
                "description": "Passport.js with Google and email flows",
                "spec_content": spec,
            }),
        )
        .await;
    let oauth = id_of(&data);
    assert!(text.starts_with("✓ Implementation Plan created successfully!\n\n"));
    assert_lines(
        &text,
        &[
            "Plan: OAuth 2.0 Implementation",
            &format!("ID: {oauth}"),
            &format!("Feature ID: {}", team.feature),
            "Status: draft",
            "Description: Passport.js with Google and email flows",
        ],
    );
    assert_eq!(data["plan"]["status"], "draft");
    assert_eq!(data["plan"]["feature"]["title"], "User Authentication");
    assert_eq!(
        data["plan"]["spec_content"], spec,
        "the created plan comes with its spec content"
    );
    let (text, data) = owner
        .ok(
            "set_plan_status",
            json!({ "plan_id": oauth, "status": "ready" }),
        )
        .await;
    assert!(text.starts_with("✓ Plan status updated!"));
    assert_lines(&text, &["Status: ready (was: draft)"]);
    assert!(text.ends_with("The plan is now available for workers to claim."));
    assert_eq!(data["previous_status"], "draft");
    assert_eq!(data["plan"]["status"], "ready");
    let (_, data) = owner
        .ok(
            "create_plan",
            json!({
                "feature_id": team.feature,
                "title": "WebSocket Notifications",
                "spec_content": "# WebSockets\nRedis pub/sub.",
                "status": "ready",
            }),
        )
        .await;
    let websocket = id_of(&data);

    // Finding and claiming work.
    let (text, data) = worker
        .ok("list_plans", json!({ "status_filter": "ready" }))
        .await;
    assert!(text.starts_with("✓ Available Plans (2):\n\n1. OAuth 2.0 Implementation\n"));
    assert_lines(
        &text,
        &[
            &format!("   ID: {oauth}"),
            "   Feature: User Authentication (v1)",
            "   Project: Task Manager",
            "   Status: ready",
            "2. WebSocket Notifications",
        ],
    );
    assert_eq!(data["total"], 2);
    assert_eq!(data["plans"][0]["id"], oauth.as_str());
    let (text, _) = worker.ok("list_plans", json!({})).await;
    assert!(
        text.starts_with("✓ Available Plans (2):\n\n1. OAuth 2.0 Implementation\n"),
        "the seed's header for a list without filters: {text}"
    );
    let (text, data) = worker.ok("get_plan", json!({ "plan_id": oauth })).await;
    assert!(text.starts_with("✓ Plan: OAuth 2.0 Implementation\n\n"));
    assert_lines(
        &text,
        &[
            &format!("Feature: User Authentication ({})", team.feature),
            "Project: Task Manager",
            "Status: ready",
            "Specification Content:",
            "## Technical Approach",
        ],
    );
    assert_eq!(data["plan"]["spec_content"], spec);
    let (text, data) = worker.ok("claim_plan", json!({ "plan_id": oauth })).await;
    assert!(text.starts_with("✓ Plan claimed successfully!"));
    assert_lines(
        &text,
        &[
            "Plan: OAuth 2.0 Implementation",
            &format!("Feature: User Authentication ({})", team.feature),
            "Status: claimed",
            "Claimed by: you (worker@example.com)",
        ],
    );
    assert_eq!(data["plan"]["claimed_by"]["email"], "worker@example.com");

    // Tracking progress: the first update moves the plan to in_progress.
    let progress = "# OAuth\n\nGoogle routes and sessions are done.";
    let (text, data) = worker
        .ok(
            "update_plan",
            json!({ "plan_id": oauth, "spec_content": progress }),
        )
        .await;
    assert!(text.starts_with("✓ Plan updated successfully!"));
    assert_lines(&text, &["Status: in_progress"]);
    assert_eq!(data["plan"]["status"], "in_progress");
    let seen = team.owner.ok(GET_PLAN, json!({ "id": oauth })).await;
    assert_eq!(seen["plan"]["status"], "IN_PROGRESS");
    assert_eq!(seen["plan"]["spec"], progress);
    assert_eq!(
        seen["plan"]["lastActivityAt"],
        data["plan"]["last_activity_at"]
    );

    // Submitting for review, then completing through set_plan_status.
    let artifacts = "## Pull Request\nhttps://github.com/user/repo/pull/123";
    let (text, data) = worker
        .ok(
            "submit_work",
            json!({ "plan_id": oauth, "artifacts_markdown": artifacts, "status": "review" }),
        )
        .await;
    assert!(text.starts_with("✓ Work submitted for review!"));
    assert_lines(
        &text,
        &[
            "Status: review (was: in_progress)",
            "Work Artifacts:",
            "https://github.com/user/repo/pull/123",
        ],
    );
    assert_eq!(data["feature_version"], Value::Null);
    assert_eq!(data["plan"]["claimed_by"], Value::Null);
    let (text, data) = owner
        .ok(
            "set_plan_status",
            json!({ "plan_id": oauth, "status": "completed" }),
        )
        .await;
    assert!(text.starts_with("✓ Plan completed!"));
    assert_lines(
        &text,
        &[
            "Status: completed (was: review)",
            "Implemented Version: v2 (created)",
        ],
    );
    assert_eq!(data["feature_version"]["version"], 2);
    assert_eq!(
        data["feature_version"]["implemented_by"]["email"],
        "worker@example.com"
    );
    assert_eq!(data["plan"]["implemented_version"], 2);

    // Submitting directly as completed.
    worker
        .ok("claim_plan", json!({ "plan_id": websocket }))
        .await;
    let (text, data) = worker
        .ok(
            "submit_work",
            json!({ "plan_id": websocket, "artifacts_markdown": "Merged to main", "status": "completed" }),
        )
        .await;
    assert!(text.starts_with("✓ Implementation completed!"));
    assert_lines(
        &text,
        &[
            "Status: completed (was: claimed)",
            "Implemented Version: v3 (created automatically)",
            "- Feature: User Authentication",
            "- Version: v3",
            "- Implemented by: worker@example.com",
        ],
    );
    assert_eq!(data["feature_version"]["version"], 3);

    // Releasing a claim, and failing a plan.
    let (_, data) = owner
        .ok(
            "create_plan",
            json!({ "feature_id": team.feature, "title": "Password Reset", "spec_content": "# Reset", "status": "ready" }),
        )
        .await;
    let reset = id_of(&data);
    worker.ok("claim_plan", json!({ "plan_id": reset })).await;
    let (text, data) = worker.ok("release_plan", json!({ "plan_id": reset })).await;
    assert!(text.starts_with("✓ Plan released successfully!"));
    assert_lines(&text, &["Status: ready (was: claimed)", "Claimed by: null"]);
    assert_eq!(data["plan"]["claimed_by"], Value::Null);
    worker.ok("claim_plan", json!({ "plan_id": reset })).await;
    let (text, _) = owner
        .ok(
            "set_plan_status",
            json!({ "plan_id": reset, "status": "failed" }),
        )
        .await;
    assert_lines(&text, &["Status: failed (was: claimed)"]);

    // Filtering plans by feature, and the version history they produced.
    let (text, data) = worker
        .ok("list_plans", json!({ "feature_id": team.feature }))
        .await;
    assert!(text.starts_with("✓ Plans for User Authentication (3):"));
    assert_lines(
        &text,
        &[
            "   Status: completed",
            "   Implemented Version: v2",
            "   Implemented Version: v3",
            "   Status: failed",
        ],
    );
    assert_eq!(data["total"], 3);
    let (text, data) = worker
        .ok(
            "list_feature_versions",
            json!({ "feature_id": team.feature }),
        )
        .await;
    assert!(text.starts_with("✓ Versions of User Authentication (3):"));
    assert_lines(
        &text,
        &[
            &format!("   Plan: OAuth 2.0 Implementation ({oauth})"),
            "   Implemented by: worker@example.com",
        ],
    );
    assert_eq!(
        data["versions"][1]["implemented_by_plan"]["id"],
        oauth.as_str()
    );
}

/// "Handling Stalled Plans": the sweeper stalls an idle claim; the worker
/// releases one and a member puts the other back to ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_plans_go_back_to_ready() {
    let server = Server::start_with(
        Backend::Sqlite,
        &["--stale-after", "1s", "--sweep-every", "200ms"],
    )
    .await;
    let team = Team::new(&server).await;
    let owner = Agent::connect(&server, &team.owner).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let first = team.plan("WebSocket Notifications", "READY").await;
    let second = team.plan("Profile CRUD", "READY").await;
    worker.ok("claim_plan", json!({ "plan_id": first })).await;
    worker.ok("claim_plan", json!({ "plan_id": second })).await;

    let watcher = &worker;
    let text = eventually(Duration::from_secs(20), || async move {
        let (text, data) = watcher
            .ok("list_plans", json!({ "status_filter": "stalled" }))
            .await;
        (data["total"] == 2).then_some(text)
    })
    .await;
    assert!(text.starts_with("✓ Stalled Plans (2):"));
    assert_lines(&text, &["   Claimed by: worker@example.com"]);
    assert!(text.contains("   Last Activity: "));

    let (text, _) = worker.ok("release_plan", json!({ "plan_id": first })).await;
    assert_lines(&text, &["Status: ready (was: stalled)"]);
    let (text, data) = owner
        .ok(
            "set_plan_status",
            json!({ "plan_id": second, "status": "ready" }),
        )
        .await;
    assert_lines(&text, &["Status: ready (was: stalled)"]);
    assert_eq!(data["plan"]["claimed_by"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_tool_errors_starting_with_their_code() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let owner = Agent::connect(&server, &team.owner).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let viewer = Agent::connect(&server, &team.viewer).await;
    let outsider = Agent::connect(&server, &team.outsider).await;
    let ready = team.plan("OAuth", "READY").await;
    let draft = team.plan("2FA", "DRAFT").await;
    worker.ok("claim_plan", json!({ "plan_id": ready })).await;

    let text = owner.error("claim_plan", json!({ "plan_id": ready })).await;
    assert!(
        text.starts_with("CONFLICT: Plan already claimed by another user"),
        "{text}"
    );
    let text = outsider
        .error("claim_plan", json!({ "plan_id": ready }))
        .await;
    assert_eq!(text, "FORBIDDEN: You are not a member of this project");
    let text = viewer
        .error(
            "set_plan_status",
            json!({ "plan_id": draft, "status": "ready" }),
        )
        .await;
    assert!(text.starts_with("FORBIDDEN: Viewers can read"), "{text}");
    let text = owner
        .error(
            "set_plan_status",
            json!({ "plan_id": draft, "status": "completed" }),
        )
        .await;
    assert_eq!(
        text,
        "INVALID_TRANSITION: Cannot set_plan_status to completed: the plan is draft; allowed next statuses from draft: ready via set_plan_status"
    );
    let missing = "0192f0c1-7c1e-7a4e-9c1a-1b2c3d4e5f60";
    let text = worker
        .error("get_plan", json!({ "plan_id": missing }))
        .await;
    assert_eq!(text, format!("NOT_FOUND: No plan with id {missing}"));
    let text = worker
        .error("get_plan", json!({ "plan_id": "plan_abc123" }))
        .await;
    assert!(text.starts_with("BAD_USER_INPUT: "), "{text}");
    assert!(text.contains("not a valid id"), "{text}");
    let text = owner
        .error(
            "set_plan_status",
            json!({ "plan_id": draft, "status": "done" }),
        )
        .await;
    assert!(
        text.starts_with("BAD_USER_INPUT: Invalid arguments for set_plan_status"),
        "{text}"
    );
    let text = worker.error("claim_plan", json!({})).await;
    assert!(
        text.starts_with("BAD_USER_INPUT: ") && text.contains("missing field `plan_id`"),
        "{text}"
    );
    let text = worker
        .error(
            "update_plan",
            json!({ "plan_id": ready, "spec_content": " " }),
        )
        .await;
    assert!(text.starts_with("BAD_USER_INPUT: "), "{text}");
    let text = worker
        .error("list_plans", json!({ "status": "ready" }))
        .await;
    assert!(
        text.starts_with("BAD_USER_INPUT: ") && text.contains("unknown field `status`"),
        "{text}"
    );

    // Nothing above changed the plans.
    let seen = team.owner.ok(GET_PLAN, json!({ "id": ready })).await;
    assert_eq!(seen["plan"]["claimedBy"]["email"], "worker@example.com");
    let seen = team.owner.ok(GET_PLAN, json!({ "id": draft })).await;
    assert_eq!(seen["plan"]["status"], "DRAFT");

    // Every call above is counted by tool and result.
    let metrics = server.metrics().await;
    let calls = |tool: &str, result: &str| {
        metrics.get(&format!(
            "plangraph_mcp_tool_calls_total{{tool=\"{tool}\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(calls("claim_plan", "ok"), 1.0);
    assert_eq!(calls("claim_plan", "CONFLICT"), 1.0);
    assert_eq!(calls("claim_plan", "FORBIDDEN"), 1.0);
    assert_eq!(calls("claim_plan", "BAD_USER_INPUT"), 1.0);
    assert_eq!(calls("set_plan_status", "INVALID_TRANSITION"), 1.0);
    assert_eq!(calls("get_plan", "NOT_FOUND"), 1.0);
    assert_eq!(
        metrics.get("plangraph_mcp_tool_call_duration_seconds_count{tool=\"claim_plan\"}"),
        4.0,
        "every claim_plan call is timed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_key_are_refused_with_http_401() {
    let server = Server::start(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "curl", "version": "1" }
        }
    });
    let bad_key = format!("pg_00000000_{}", "0".repeat(40));
    let headers = [
        None,
        Some("Bearer pg_nonsense".to_owned()),
        Some(format!("Bearer {bad_key}")),
        Some("Basic dXNlcjpwYXNz".to_owned()),
    ];
    for authorization in headers {
        let mut request = http
            .post(format!("{}/mcp", server.base_url))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("answer");
        assert_eq!(response.status(), 401, "{authorization:?}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge:?}");
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
    }
    assert!(Agent::try_connect(&server, &bad_key).await.is_err());

    // The same request with a valid key is served.
    let response = http
        .post(format!("{}/mcp", server.base_url))
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(server.bootstrap_key.as_deref().expect("admin key"))
        .json(&initialize)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
}

/// A change made over MCP goes through the same services and event bus as
/// GraphQL: a live board sees it at once, and a query right after shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_over_mcp_reach_graphql_queries_and_subscribers() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let plan = team.plan("OAuth", "READY").await;
    let mut board = Subscriber::connect(&server.base_url, team.owner.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;

    worker.ok("claim_plan", json!({ "plan_id": plan })).await;

    let event = board.next_event().await;
    assert_eq!(event["kind"], "CLAIMED");
    assert_eq!(event["actor"]["email"], "worker@example.com");
    assert_eq!(event["plan"]["id"], plan.as_str());
    let seen = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(seen["plan"]["status"], "CLAIMED");
    assert_eq!(seen["plan"]["claimedBy"]["email"], "worker@example.com");
}

/// Features and projects: what an assistant reads before writing plans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_tools_create_read_and_version_features() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let owner = Agent::connect(&server, &team.owner).await;
    let viewer = Agent::connect(&server, &team.viewer).await;

    let (text, data) = viewer.ok("list_projects", json!({})).await;
    assert!(text.starts_with("✓ Your Projects (1):\n\n1. Task Manager"));
    assert_lines(
        &text,
        &[&format!("   ID: {}", team.project), "   Role: viewer"],
    );
    assert_eq!(data["projects"][0]["role"], "viewer");

    let (text, data) = owner
        .ok(
            "create_feature",
            json!({
                "project_id": team.project,
                "title": "Real-time Notifications",
                "spec_content": "# Notifications\nPush changes to browsers.",
            }),
        )
        .await;
    let feature = data["feature"]["id"]
        .as_str()
        .expect("feature id")
        .to_owned();
    assert!(text.starts_with("✓ Feature created successfully!"));
    assert_lines(&text, &["Feature: Real-time Notifications", "Version: v1"]);
    team.plan_of(&feature, "WebSocket Notifications", "READY")
        .await;

    let (text, data) = viewer
        .ok("list_features", json!({ "project_id": team.project }))
        .await;
    assert!(text.starts_with("✓ Features of Task Manager (2):"));
    assert_lines(
        &text,
        &["2. Real-time Notifications", "   Plans: 1 (1 ready)"],
    );
    assert_eq!(data["features"][1]["plan_counts"], json!({ "ready": 1 }));

    let (text, data) = viewer
        .ok("get_feature", json!({ "feature_id": feature }))
        .await;
    assert!(text.starts_with("✓ Feature: Real-time Notifications"));
    assert_lines(
        &text,
        &["Specification Content:", "Push changes to browsers."],
    );
    assert_eq!(
        data["feature"]["spec_content"],
        "# Notifications\nPush changes to browsers."
    );

    let (text, _) = owner
        .ok(
            "update_feature",
            json!({ "feature_id": feature, "spec_content": "# Notifications\nAlso email." }),
        )
        .await;
    assert_lines(&text, &["Version: v1 (amended)"]);
    let (text, data) = owner
        .ok(
            "update_feature",
            json!({
                "feature_id": feature,
                "spec_content": "# Notifications v2\nAnd SMS.",
                "title": "Notifications",
                "new_version": true,
            }),
        )
        .await;
    assert!(text.starts_with("✓ Feature updated: version v2 created!"));
    assert_eq!(data["feature"]["current_version"], 2);
    let (text, data) = viewer
        .ok("list_feature_versions", json!({ "feature_id": feature }))
        .await;
    assert!(text.starts_with("✓ Versions of Notifications (2):"));
    assert_eq!(data["versions"][1]["version"], 2);
    let text = viewer
        .error(
            "update_feature",
            json!({ "feature_id": feature, "spec_content": "# Mine" }),
        )
        .await;
    assert!(text.starts_with("FORBIDDEN: "), "{text}");

    let seen = team
        .owner
        .ok(
            "query($id: ID!) { feature(id: $id) { title currentVersion spec } }",
            json!({ "id": feature }),
        )
        .await;
    assert_eq!(
        seen["feature"],
        json!({ "title": "Notifications", "currentVersion": 2, "spec": "# Notifications v2\nAnd SMS." })
    );
}

/// list_projects reads each relation (projects, roles, plan counts) once,
/// however many projects it lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_projects_costs_the_same_for_one_project_or_many() {
    let server = Server::start_with(Backend::Sqlite, &NO_BACKGROUND_STATEMENTS).await;
    let team = Team::new(&server).await;
    let worker = Agent::connect(&server, &team.worker).await;
    worker.ok("list_projects", json!({})).await; // the key's last use is recorded now
    let statements = || async { server.metrics().await.get("plangraph_db_statements_total") };
    let mut costs = Vec::new();
    for extra_projects in [0, 5] {
        for index in 0..extra_projects {
            team.worker
                .create_project(&format!("Side project {index}"))
                .await;
        }
        let before = statements().await;
        let (_, data) = worker.ok("list_projects", json!({})).await;
        costs.push(statements().await - before);
        let roles: Vec<&str> = data["projects"]
            .as_array()
            .expect("projects")
            .iter()
            .filter_map(|project| project["role"].as_str())
            .collect();
        let mut expected = vec!["member"];
        expected.extend(std::iter::repeat_n("owner", extra_projects));
        assert_eq!(roles, expected);
    }
    assert_eq!(costs[0], costs[1], "statements per call: {costs:?}");
}

/// Over MCP an error names arguments, operations and statuses as the tools
/// do; GraphQL keeps its own names for the same errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_speak_the_tools_vocabulary() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let ready = team.plan("OAuth", "READY").await;

    let (text, error) = worker
        .refusal("get_plan", json!({ "plan_id": "plan_abc123" }))
        .await;
    assert_eq!(
        text,
        "BAD_USER_INPUT: plan_id \"plan_abc123\" is not a valid id; ids are UUIDs such as 0192f0c1-7c1e-7a4e-9c1a-1b2c3d4e5f60"
    );
    assert_eq!(error["argument"], "plan_id");
    let text = worker
        .error(
            "update_plan",
            json!({ "plan_id": ready, "spec_content": " " }),
        )
        .await;
    assert_eq!(text, "BAD_USER_INPUT: spec_content must not be empty");
    let text = worker
        .error(
            "submit_work",
            json!({ "plan_id": ready, "artifacts_markdown": "", "status": "review" }),
        )
        .await;
    assert_eq!(text, "BAD_USER_INPUT: artifacts_markdown must not be empty");
    let text = worker
        .error("list_plans", json!({ "feature_id": "feat_xyz789" }))
        .await;
    assert!(
        text.starts_with("BAD_USER_INPUT: feature_id \"feat_xyz789\" is not a valid id"),
        "{text}"
    );
    let (text, error) = worker
        .refusal("release_plan", json!({ "plan_id": ready }))
        .await;
    assert!(
        text.starts_with("INVALID_TRANSITION: Cannot release_plan: the plan is ready; "),
        "{text}"
    );
    assert_eq!(error["current_status"], "ready");

    // The same refusals over GraphQL, in GraphQL's names.
    let reply = team.worker.send(RELEASE, json!({ "planId": ready })).await;
    assert!(
        reply
            .message()
            .starts_with("Cannot releasePlan: the plan is READY; "),
        "{}",
        reply.message()
    );
    assert_eq!(reply.errors[0]["extensions"]["currentStatus"], "READY");
    let reply = team
        .worker
        .send(UPDATE_PLAN, json!({ "planId": ready, "spec": " " }))
        .await;
    assert_eq!(reply.message(), "specContent must not be empty");
    assert_eq!(reply.errors[0]["extensions"]["argument"], "specContent");
}

/// A refused transition says which operation reaches each status, so it
/// never offers the refused move as if it were allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_transition_says_which_operation_reaches_each_status() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let plan = team.plan_in("OAuth", "CLAIMED").await;

    let (text, error) = worker
        .refusal(
            "set_plan_status",
            json!({ "plan_id": plan, "status": "in_progress" }),
        )
        .await;

    assert_eq!(
        text,
        "INVALID_TRANSITION: Cannot set_plan_status to in_progress: the plan is claimed; allowed next statuses from claimed: ready via release_plan, in_progress via update_plan, review/completed via submit_work, failed via set_plan_status"
    );
    assert_eq!(error["current_status"], "claimed");
    assert_eq!(
        error["allowed_transitions"],
        json!([
            { "status": "ready", "operation": "release_plan" },
            { "status": "in_progress", "operation": "update_plan" },
            { "status": "review", "operation": "submit_work" },
            { "status": "completed", "operation": "submit_work" },
            { "status": "failed", "operation": "set_plan_status" },
        ])
    );
    let reply = team
        .worker
        .send(
            SET_STATUS,
            json!({ "planId": plan, "status": "IN_PROGRESS" }),
        )
        .await;
    assert_eq!(
        reply.errors[0]["extensions"]["allowedTransitions"][1],
        json!({ "status": "IN_PROGRESS", "operation": "updatePlan" })
    );
    assert!(
        reply.message().contains("IN_PROGRESS via updatePlan"),
        "{}",
        reply.message()
    );
}

/// The seed: update_plan "automatically updates last_activity_at",
/// also for a plan nobody has claimed yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_moves_last_activity() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let owner = Agent::connect(&server, &team.owner).await;
    for status in ["DRAFT", "READY"] {
        let plan = team.plan(&format!("{status} plan"), status).await;
        let created = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;

        let (text, data) = owner
            .ok(
                "update_plan",
                json!({ "plan_id": plan, "spec_content": "# Plan\nMore detail." }),
            )
            .await;

        let updated = &data["plan"];
        assert_eq!(updated["status"], status.to_lowercase());
        assert_eq!(updated["last_activity_at"], updated["updated_at"]);
        assert_ne!(
            updated["last_activity_at"], created["plan"]["lastActivityAt"],
            "{status}: {text}"
        );
    }
}

/// Claiming a plan that is not up for grabs answers the seed's CONFLICT
/// sentences; the status and the claimer are details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_conflicts_are_the_seeds_sentences() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let owner = Agent::connect(&server, &team.owner).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let draft = team.plan("2FA", "DRAFT").await;
    let taken = team.plan("OAuth", "READY").await;
    worker.ok("claim_plan", json!({ "plan_id": taken })).await;
    let worker_id = team.worker.user_id().await;

    let (text, error) = owner
        .refusal("claim_plan", json!({ "plan_id": draft }))
        .await;
    assert_eq!(
        text,
        "CONFLICT: Plan not in ready status (may be already claimed or in progress)"
    );
    assert_eq!(error["current_status"], "draft");
    assert_eq!(error["claimed_by"], Value::Null);
    let (text, error) = owner
        .refusal("claim_plan", json!({ "plan_id": taken }))
        .await;
    assert!(
        text.starts_with(
            "CONFLICT: Plan already claimed by another user (worker@example.com, lease until "
        ),
        "{text}"
    );
    assert!(
        text.ends_with("); use claim_next_plan to get other work"),
        "{text}"
    );
    assert_eq!(error["current_status"], "claimed");
    assert_eq!(error["claimed_by"], worker_id.as_str());
    let text = worker
        .error("claim_plan", json!({ "plan_id": taken }))
        .await;
    assert_eq!(text, "CONFLICT: You have already claimed this plan");

    let reply = team.owner.send(CLAIM, json!({ "planId": taken })).await;
    assert!(
        reply
            .message()
            .starts_with("Plan already claimed by another user (worker@example.com, lease until "),
        "{}",
        reply.message()
    );
    assert!(
        reply
            .message()
            .ends_with("; use claimNextPlan to get other work"),
        "{}",
        reply.message()
    );
    let extensions = &reply.errors[0]["extensions"];
    assert_eq!(extensions["currentStatus"], "CLAIMED");
    assert_eq!(extensions["claimedBy"], worker_id.as_str());
}

/// Spec drift for agents: get_plan warns, get_spec_diff shows what changed,
/// rebase_plan clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_plan_warns_of_drift_and_get_spec_diff_shows_it() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let plan = team.plan("written on v1", "READY").await;
    let (text, data) = worker.ok("get_plan", json!({ "plan_id": plan })).await;
    assert!(!text.contains('⚠'), "{text}");
    assert_eq!(data["plan"]["based_on_version"], 1);
    assert_eq!(data["plan"]["spec_drift"], Value::Null);
    let (text, data) = worker.ok("get_spec_diff", json!({ "plan_id": plan })).await;
    assert!(text.starts_with("✓ Plan is up to date"), "{text}");
    assert_eq!(data["diff"]["unified"], "");

    // Two new versions, the second with a new spec.
    team.plan_in("implemented", "COMPLETED").await;
    team.owner
        .ok(
            "mutation($id: ID!) { updateFeature(featureId: $id, newVersion: true,
               specContent: \"# Auth\\nUsers sign in.\\nWith passkeys.\") { id } }",
            json!({ "id": team.feature }),
        )
        .await;

    let (text, data) = worker.ok("get_plan", json!({ "plan_id": plan })).await;
    assert_lines(&text, &["⚠ Written against v1; feature is at v3"]);
    assert_eq!(
        data["plan"]["spec_drift"],
        json!({ "from_version": 1, "to_version": 3, "behind": 2 })
    );
    let (text, data) = worker.ok("get_spec_diff", json!({ "plan_id": plan })).await;
    assert_lines(&text, &["+With passkeys.", "Lines: +2 -1"]);
    assert_eq!(data["from_version"], 1);
    assert_eq!(data["to_version"], 3);
    assert_eq!(
        (
            data["diff"]["added"].clone(),
            data["diff"]["removed"].clone()
        ),
        (json!(2), json!(1))
    );
    let (_, data) = worker
        .ok(
            "get_spec_diff",
            json!({ "feature_id": team.feature, "from_version": 2 }),
        )
        .await;
    assert_eq!(data["diff"]["added"], 2);
    assert!(
        worker
            .error("get_spec_diff", json!({ "feature_id": team.feature }))
            .await
            .starts_with("BAD_USER_INPUT: Give either plan_id")
    );

    let (text, data) = worker.ok("rebase_plan", json!({ "plan_id": plan })).await;
    assert!(text.starts_with("✓ Plan rebased!"), "{text}");
    assert_eq!(data["plan"]["based_on_version"], 3);
    let (text, _) = worker.ok("get_plan", json!({ "plan_id": plan })).await;
    assert!(!text.contains('⚠'), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_tools_claim_the_next_plan_and_fence_stale_tokens() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let agent = Agent::connect(&server, &team.worker).await;
    let project = team.project.clone();

    let (text, data) = agent
        .ok("claim_next_plan", json!({ "project_id": project }))
        .await;
    assert_eq!(text.lines().next(), Some("No plan is ready"));
    assert_eq!(data["plan"], Value::Null);

    let first = team.plan("first", "READY").await;
    let urgent = team.plan("urgent but blocked", "READY").await;
    let (_, data) = agent
        .ok(
            "set_plan_priority",
            json!({ "plan_id": urgent, "priority": 0 }),
        )
        .await;
    assert_eq!(data["plan"]["priority"], 0);
    let (text, _) = agent
        .ok(
            "add_plan_dependency",
            json!({ "plan_id": urgent, "blocked_by_plan_id": first }),
        )
        .await;
    assert!(text.starts_with("✓ Dependency added"), "{text}");
    let (_, refusal) = agent
        .refusal(
            "add_plan_dependency",
            json!({ "plan_id": first, "blocked_by_plan_id": urgent }),
        )
        .await;
    assert_eq!(refusal["code"], "BAD_USER_INPUT");
    assert_eq!(refusal["argument"], "blocked_by_plan_id");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cycle"),
        "{refusal}"
    );
    let (_, refusal) = agent
        .refusal("claim_plan", json!({ "plan_id": urgent }))
        .await;
    assert_eq!(refusal["reason"], "BLOCKED");
    assert_eq!(refusal["blocked_by"], json!([first]));

    // The urgent plan is blocked, so the next one is the other.
    let (text, data) = agent
        .ok(
            "claim_next_plan",
            json!({ "project_id": project, "lease_seconds": 600 }),
        )
        .await;
    assert_eq!(id_of(&data), first);
    assert!(text.starts_with("✓ Plan claimed successfully!"), "{text}");
    assert!(text.contains("# first"), "the spec comes along: {text}");
    let token = data["plan"]["claim_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(data["plan"]["spec_content"].is_string());
    assert!(data["plan"]["lease_expires_at"].is_string());

    let (text, data) = agent
        .ok(
            "heartbeat_plan",
            json!({ "plan_id": first, "claim_token": token }),
        )
        .await;
    assert!(text.starts_with("✓ Lease renewed"), "{text}");
    assert_eq!(
        data["plan"]["claim_token"],
        Value::Null,
        "a token is in the claim's answer only"
    );

    // Released and claimed again (by the same user): the old token is stale.
    agent
        .ok(
            "release_plan",
            json!({ "plan_id": first, "claim_token": token }),
        )
        .await;
    agent.ok("claim_plan", json!({ "plan_id": first })).await;
    let (text, refusal) = agent
        .refusal(
            "submit_work",
            json!({ "plan_id": first, "artifacts_markdown": "done", "status": "completed", "claim_token": token }),
        )
        .await;
    assert_eq!(refusal["reason"], "STALE_CLAIM");
    assert!(
        text.starts_with("CONFLICT (STALE_CLAIM): This claim_token is no longer current"),
        "{text}"
    );

    let (_, data) = agent
        .ok(
            "remove_plan_dependency",
            json!({ "plan_id": urgent, "blocked_by_plan_id": first }),
        )
        .await;
    assert_eq!(data["plan"]["id"], urgent.as_str());
    let (_, data) = agent
        .ok("claim_next_plan", json!({ "project_id": project }))
        .await;
    assert_eq!(id_of(&data), urgent, "unblocked, it is the most urgent");
}

/// list_plans filters as `plans(...)` does (claimer, priority, blocked,
/// drifted) and pages past its 100 plans a call with `after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_plans_filters_as_graphql_does_and_pages_past_a_hundred() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let worker = Agent::connect(&server, &team.worker).await;
    let mut made = Vec::new();
    for index in 0..103 {
        made.push(team.plan(&format!("plan {index:03}"), "READY").await);
    }
    let vars = json!({ "planId": made[5], "priority": 0 });
    team.owner
        .ok(
            "mutation($planId: ID!, $priority: Int!) { setPlanPriority(planId: $planId, priority: $priority) { id } }",
            vars,
        )
        .await;
    let vars = json!({ "plan": made[7], "blocker": made[6] });
    team.owner
        .ok(
            "mutation($plan: ID!, $blocker: ID!) { addPlanDependency(planId: $plan, blockedByPlanId: $blocker) { id } }",
            vars,
        )
        .await;
    worker.ok("claim_plan", json!({ "plan_id": made[9] })).await;

    let ids = |data: &Value| -> Vec<String> {
        data["plans"]
            .as_array()
            .expect("plans")
            .iter()
            .map(|plan| plan["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let project = team.project.as_str();
    let (text, first) = worker
        .ok("list_plans", json!({ "project_id": project }))
        .await;
    assert_eq!(ids(&first), made[..100]);
    assert_eq!(first["total"], 103);
    assert_eq!(first["truncated"], true);
    let next = first["next_after"].as_str().expect("next_after");
    assert_eq!(next, made[99]);
    assert!(
        text.contains(&format!("call list_plans again with after: {next}")),
        "{text}"
    );
    let (_, rest) = worker
        .ok(
            "list_plans",
            json!({ "project_id": project, "after": next }),
        )
        .await;
    assert_eq!(ids(&rest), made[100..]);
    assert_eq!(rest["next_after"], Value::Null);
    assert_eq!(rest["truncated"], false);

    for (filter, expected) in [
        (json!({ "claimed_by": "me" }), vec![made[9].clone()]),
        (json!({ "priority": 0 }), vec![made[5].clone()]),
        (json!({ "blocked": true }), vec![made[7].clone()]),
        (json!({ "blocked_by_failed": true }), vec![]),
    ] {
        let mut arguments = filter.clone();
        arguments["project_id"] = json!(project);
        let (_, data) = worker.ok("list_plans", arguments).await;
        assert_eq!(ids(&data), expected, "{filter}");
        assert_eq!(data["total"], expected.len(), "{filter}");
    }
    let (_, drifted) = worker
        .ok(
            "list_plans",
            json!({ "project_id": project, "drifted": true }),
        )
        .await;
    assert_eq!(drifted["total"], 0, "nothing changed the spec");

    // get_plan shows both sides of a dependency.
    let (text, blocker) = worker.ok("get_plan", json!({ "plan_id": made[6] })).await;
    assert_eq!(blocker["plan"]["blocks"], json!([made[7]]));
    assert!(
        text.contains(&format!("Blocks: 1 plan waits for this one: {}", made[7])),
        "{text}"
    );
    let (text, waiter) = worker.ok("get_plan", json!({ "plan_id": made[7] })).await;
    assert_eq!(waiter["plan"]["blocked_by"][0]["id"], made[6].as_str());
    assert!(text.contains("Waits for:"), "{text}");
}

/// A claim that finds the last ready plan taken by a concurrent claim (its
/// row locked, not yet committed) is told to wait, not that all is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_being_claimed_by_another_caller_means_wait_not_done() {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan("the last one", "READY").await;
    let agent = Agent::connect(&server, &team.worker).await;

    // Another claim in flight: it holds the plan's row as claimNextPlan's
    // own statement would, and has not committed.
    let url = server.database.url().expect("a PostgreSQL database");
    let db = sea_orm::Database::connect(&url).await.expect("connect");
    let other = db.begin().await.expect("a transaction");
    other
        .execute_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!("SELECT id FROM plans WHERE id = '{plan}' FOR NO KEY UPDATE"),
        ))
        .await
        .expect("the row locked");

    let (text, data) = agent
        .ok("claim_next_plan", json!({ "project_id": team.project }))
        .await;
    assert_eq!(data["plan"], Value::Null, "{text}");
    assert_eq!(data["nothing_ready"]["reason"], "WAIT", "{text}");
    assert_eq!(data["nothing_ready"]["being_worked_on"], 1, "{text}");
    other.rollback().await.expect("rollback");

    // Once the other claim has gone, the plan is there to claim.
    let (_, data) = agent
        .ok("claim_next_plan", json!({ "project_id": team.project }))
        .await;
    assert_eq!(data["plan"]["id"], plan.as_str());
}
