//! A GraphQL-over-HTTP client holding one API key, as any caller of `/graphql`.

use serde_json::{Value, json};

use super::{CREATE_FEATURE, CREATE_PLAN, CREATE_PROJECT};

/// A GraphQL-over-HTTP client with an optional API key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    key: Option<String>,
}

/// A response's `data` and `errors`.
#[derive(Debug)]
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub data: Value,
    pub errors: Vec<Value>,
}

impl Reply {
    /// The `extensions.code` of the first error.
    pub fn code(&self) -> &str {
        self.errors
            .first()
            .and_then(|error| error["extensions"]["code"].as_str())
            .unwrap_or_else(|| panic!("expected an error, got {self:?}"))
    }

    pub fn message(&self) -> &str {
        self.errors
            .first()
            .and_then(|error| error["message"].as_str())
            .unwrap_or_default()
    }
}

impl Client {
    pub fn new(base_url: &str, key: Option<&str>) -> Client {
        super::install_crypto_provider();
        Client {
            http: reqwest::Client::new(),
            endpoint: format!("{base_url}/graphql"),
            key: key.map(str::to_owned),
        }
    }

    pub fn key(&self) -> &str {
        self.key.as_deref().expect("client has a key")
    }

    pub async fn send(&self, query: &str, variables: Value) -> Reply {
        self.try_send(query, variables)
            .await
            .expect("the server answers with JSON")
    }

    /// Like `send`, but `None` when the server is unreachable (e.g. killed).
    pub async fn try_send(&self, query: &str, variables: Value) -> Option<Reply> {
        let mut request = self
            .http
            .post(&self.endpoint)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        let body: Value = response.json().await.ok()?;
        Some(Reply {
            status,
            data: body["data"].clone(),
            errors: body["errors"].as_array().cloned().unwrap_or_default(),
        })
    }

    /// Sends `query` and gives up on the answer after `patience`, as an
    /// impatient client does (its connection closes); true if it did give up.
    pub async fn give_up_after(
        &self,
        patience: std::time::Duration,
        query: &str,
        variables: Value,
    ) -> bool {
        let impatient = reqwest::Client::builder()
            .timeout(patience)
            .build()
            .expect("client");
        let mut request = impatient
            .post(&self.endpoint)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        request.send().await.is_err()
    }

    /// Creates a project and returns its id.
    pub async fn create_project(&self, name: &str) -> String {
        let data = self.ok(CREATE_PROJECT, json!({ "name": name })).await;
        data["createProject"]["id"]
            .as_str()
            .expect("project id")
            .to_owned()
    }

    /// Creates a feature and returns its id.
    pub async fn create_feature(&self, project: &str, title: &str, spec: &str) -> String {
        let vars = json!({ "projectId": project, "title": title, "spec": spec });
        let data = self.ok(CREATE_FEATURE, vars).await;
        data["createFeature"]["id"]
            .as_str()
            .expect("feature id")
            .to_owned()
    }

    /// Creates a DRAFT plan and returns its id.
    pub async fn create_plan(&self, feature: &str, title: &str) -> String {
        let vars = json!({ "featureId": feature, "title": title, "spec": format!("# {title}") });
        let data = self.ok(CREATE_PLAN, vars).await;
        data["createPlan"]["id"]
            .as_str()
            .expect("plan id")
            .to_owned()
    }

    /// The cursor of `plan`'s newest event: a subscription with this `after`
    /// misses nothing that happens to the plan from now on, however long it
    /// takes to start.
    pub async fn latest_cursor(&self, plan: &str) -> Value {
        let data = self
            .ok(
                "query($id: ID!) { plan(id: $id) { events { cursor } } }",
                json!({ "id": plan }),
            )
            .await;
        let events = data["plan"]["events"].as_array().expect("events");
        events.last().expect("a plan has events")["cursor"].clone()
    }

    /// The id of the user this client authenticates as.
    pub async fn user_id(&self) -> String {
        let data = self.ok("{ viewer { id } }", json!({})).await;
        data["viewer"]["id"].as_str().expect("user id").to_owned()
    }

    /// Runs an operation that must succeed and returns its `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let reply = self.send(query, variables).await;
        assert!(
            reply.errors.is_empty(),
            "unexpected errors: {:?}",
            reply.errors
        );
        reply.data
    }

    /// Runs an operation that must fail and returns its first error code.
    pub async fn code(&self, query: &str, variables: Value) -> String {
        let reply = self.send(query, variables).await;
        assert!(
            !reply.errors.is_empty(),
            "expected an error, got {:?}",
            reply.data
        );
        reply.code().to_owned()
    }
}
