//! The authorization matrix: every mutation and query against every kind of
//! caller, with the expected outcome. The table must name every field of the
//! schema's Query and Mutation types, so a new operation without rows fails.

use std::collections::BTreeSet;

use crate::helpers::*;
use serde_json::json;

on_both_databases!(every_operation_for_every_caller);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Owner,
    Member,
    Viewer,
    NonMember,
    Anonymous,
    RevokedKey,
    Admin,
}

const CALLERS: [Caller; 7] = [
    Caller::Owner,
    Caller::Member,
    Caller::Viewer,
    Caller::NonMember,
    Caller::Anonymous,
    Caller::RevokedKey,
    Caller::Admin,
];

/// Expected result: success or an error code.
type Expect = Option<&'static str>;
const OK: Expect = None;
const FORBIDDEN: Expect = Some("FORBIDDEN");

/// The outcome for each caller, in `CALLERS` order.
type Row = [Expect; 7];

/// Who may do it: anyone signed in; project writers; project readers; owners; admins.
fn anyone() -> Row {
    [
        OK,
        OK,
        OK,
        OK,
        Some("UNAUTHENTICATED"),
        Some("UNAUTHENTICATED"),
        OK,
    ]
}
fn readers() -> Row {
    [
        OK,
        OK,
        OK,
        FORBIDDEN,
        Some("UNAUTHENTICATED"),
        Some("UNAUTHENTICATED"),
        FORBIDDEN,
    ]
}
fn writers() -> Row {
    [
        OK,
        OK,
        FORBIDDEN,
        FORBIDDEN,
        Some("UNAUTHENTICATED"),
        Some("UNAUTHENTICATED"),
        FORBIDDEN,
    ]
}
fn owners() -> Row {
    [
        OK,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        Some("UNAUTHENTICATED"),
        Some("UNAUTHENTICATED"),
        FORBIDDEN,
    ]
}
fn admins() -> Row {
    [
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        Some("UNAUTHENTICATED"),
        Some("UNAUTHENTICATED"),
        OK,
    ]
}

/// Every operation of the schema with its expected outcomes.
fn matrix() -> Vec<(&'static str, Row)> {
    vec![
        // Queries.
        ("viewer", anyone()),
        ("apiKeys", anyone()),
        ("projects", anyone()),
        ("plans", anyone()),
        ("project", readers()),
        ("feature", readers()),
        ("plan", readers()),
        ("featureVersions", readers()),
        // Everyone may ask; what they may not see is null (see protocol.rs).
        ("node", anyone()),
        ("nodes", anyone()),
        // Mutations.
        ("createUser", admins()),
        ("createProject", anyone()),
        ("createApiKey", anyone()),
        ("revokeApiKey", anyone()),
        ("addProjectMember", owners()),
        ("removeProjectMember", owners()),
        ("setProjectReviewPolicy", owners()),
        ("createFeature", writers()),
        ("updateFeature", writers()),
        ("createPlan", writers()),
        ("updatePlan", writers()),
        ("setPlanStatus", writers()),
        ("claimPlan", writers()),
        // Release of someone else's claim: owners only.
        ("releasePlan", owners()),
        // Submission of work claimed by the caller (viewers and outsiders
        // cannot claim, so they try a plan claimed by a member).
        ("submitWork", writers()),
        // Rebasing a plan nobody holds: any writer.
        ("rebasePlan", writers()),
        // Drift and spec history: whoever may read the plan or feature.
        ("Plan.specDrift", readers()),
        ("Plan.specRevisions", readers()),
        ("Feature.specDiff", readers()),
        ("FeatureVersion.diff", readers()),
        // Webhooks: owners only, the list on a project included.
        ("createWebhook", owners()),
        ("updateWebhook", owners()),
        ("deleteWebhook", owners()),
        ("rotateWebhookSecret", owners()),
        ("redeliverWebhookDelivery", owners()),
        ("Project.webhooks", owners()),
        // Fleets: members work the queue and shape it; viewers only read.
        // After the webhook rows: the plans these rows create would push the
        // fixture's delivery out of its webhook's log of 50.
        ("setPlanPriority", writers()),
        ("addPlanDependency", writers()),
        ("removePlanDependency", writers()),
        ("claimNextPlan", writers()),
        // Renewing a lease the caller holds (others try the worker's).
        ("heartbeatPlan", writers()),
        ("Plan.blockedBy", readers()),
        ("Plan.claimToken", readers()),
    ]
}

const CREATE_WEBHOOK: &str = "mutation($projectId: ID!, $url: String!) {
    createWebhook(projectId: $projectId, url: $url, eventKinds: [FAILED]) { webhook { id } } }";

/// A webhook of the team's project, made by the owner for one caller to act on.
async fn webhook_for(fixture: &Fixture) -> String {
    let vars = json!({ "projectId": fixture.team.project, "url": fixture.receiver.url });
    let created = fixture.team.owner.ok(CREATE_WEBHOOK, vars).await;
    created["createWebhook"]["webhook"]["id"]
        .as_str()
        .expect("webhook id")
        .to_owned()
}

/// Deletes a webhook made for one caller, unless the caller already did, so
/// the project stays under its webhook limit.
async fn discard_webhook(fixture: &Fixture, id: &str) {
    let delete = "mutation($id: ID!) { deleteWebhook(id: $id) }";
    fixture.team.owner.send(delete, json!({ "id": id })).await;
}

struct Fixture {
    team: Team,
    clients: Vec<Client>,
    /// A member nobody else is, whose claims the others try to release.
    bystander: Client,
    /// Where the fixture's webhooks send.
    receiver: Receiver,
    /// A logged webhook delivery, for redelivery.
    delivery: String,
    /// A READY plan written against v1 of a feature now at v2.
    drifted: String,
}

impl Fixture {
    fn client(&self, caller: Caller) -> &Client {
        &self.clients[CALLERS.iter().position(|c| *c == caller).expect("caller")]
    }
}

/// Runs `operation` as `caller` on fresh prerequisites.
async fn perform(fixture: &Fixture, operation: &str, caller: Caller) -> Reply {
    let team = &fixture.team;
    let client = fixture.client(caller);
    let project = json!(team.project);
    let feature = json!(team.feature);
    match operation {
        "viewer" => client.send("{ viewer { id } }", json!({})).await,
        "apiKeys" => client.send("{ apiKeys { id } }", json!({})).await,
        "projects" => client.send("{ projects { id } }", json!({})).await,
        "plans" => client.send("{ plans { totalCount } }", json!({})).await,
        "project" => {
            client
                .send(
                    "query($id: ID!) { project(id: $id) { name } }",
                    json!({ "id": project }),
                )
                .await
        }
        "feature" => {
            client
                .send(
                    "query($id: ID!) { feature(id: $id) { title } }",
                    json!({ "id": feature }),
                )
                .await
        }
        "plan" => {
            let plan = team.plan("readable", "DRAFT").await;
            client
                .send(
                    "query($id: ID!) { plan(id: $id) { title } }",
                    json!({ "id": plan }),
                )
                .await
        }
        "node" => {
            let query = "query($id: ID!) { node(id: $id) { id } }";
            client.send(query, json!({ "id": feature })).await
        }
        "nodes" => {
            let query = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }";
            client
                .send(query, json!({ "ids": [feature, project] }))
                .await
        }
        "featureVersions" => {
            let query = "query($id: ID!) { featureVersions(featureId: $id) { version } }";
            client.send(query, json!({ "id": feature })).await
        }
        "createUser" => {
            let email = format!("made-by-{caller:?}@example.com").to_lowercase();
            let query = "mutation($email: String!) { createUser(email: $email) { secret } }";
            client.send(query, json!({ "email": email })).await
        }
        "createProject" => client.send(CREATE_PROJECT, json!({ "name": "mine" })).await,
        "createApiKey" => {
            client
                .send(
                    "mutation { createApiKey(label: \"second\") { secret } }",
                    json!({}),
                )
                .await
        }
        "revokeApiKey" => {
            // Each caller revokes a spare key of their own (or, signed out,
            // some existing key).
            let owner_of_key = match caller {
                Caller::Anonymous | Caller::RevokedKey => &team.owner,
                _ => client,
            };
            let created = owner_of_key
                .ok(
                    "mutation { createApiKey(label: \"spare\") { apiKey { id } } }",
                    json!({}),
                )
                .await;
            let id = created["createApiKey"]["apiKey"]["id"].clone();
            client
                .send(
                    "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
                    json!({ "id": id }),
                )
                .await
        }
        "addProjectMember" => {
            let vars =
                json!({ "projectId": project, "email": "bystander@example.com", "role": "MEMBER" });
            client.send(ADD_MEMBER, vars).await
        }
        "setProjectReviewPolicy" => {
            // Any member approves, as before: the rows after this one stay as they were.
            let query = "mutation($projectId: ID!) {
                setProjectReviewPolicy(projectId: $projectId, policy: ANY_MEMBER) { reviewPolicy } }";
            client.send(query, json!({ "projectId": project })).await
        }
        "removeProjectMember" => {
            let extra = format!("removable-{caller:?}@example.com").to_lowercase();
            let created = fixture
                .client(Caller::Admin)
                .ok(
                    "mutation($email: String!) { createUser(email: $email) { user { id } } }",
                    json!({ "email": extra }),
                )
                .await;
            team.owner
                .ok(ADD_MEMBER, json!({ "projectId": project, "email": extra }))
                .await;
            client
                .send(
                    REMOVE_MEMBER,
                    json!({ "projectId": project, "userId": created["createUser"]["user"]["id"] }),
                )
                .await
        }
        "createFeature" => {
            client
                .send(
                    CREATE_FEATURE,
                    json!({ "projectId": project, "title": "f", "spec": "# f" }),
                )
                .await
        }
        "updateFeature" => {
            let query = "mutation($id: ID!) { updateFeature(featureId: $id, title: \"Renamed\") { title } }";
            client.send(query, json!({ "id": feature })).await
        }
        "createPlan" => {
            client
                .send(
                    CREATE_PLAN,
                    json!({ "featureId": feature, "title": "p", "spec": "# p" }),
                )
                .await
        }
        "updatePlan" => {
            let plan = team.plan("editable", "READY").await;
            client
                .send(UPDATE_PLAN, json!({ "planId": plan, "spec": "# edited" }))
                .await
        }
        "setPlanStatus" => {
            let plan = team.plan("publishable", "DRAFT").await;
            client
                .send(SET_STATUS, json!({ "planId": plan, "status": "READY" }))
                .await
        }
        "claimPlan" => {
            let plan = team.plan("claimable", "READY").await;
            client.send(CLAIM, json!({ "planId": plan })).await
        }
        "releasePlan" => {
            let plan = team.plan("held by the bystander", "READY").await;
            fixture.bystander.ok(CLAIM, json!({ "planId": plan })).await;
            client.send(RELEASE, json!({ "planId": plan })).await
        }
        "submitWork" => {
            let plan = team.plan("to submit", "READY").await;
            let claimer = match caller {
                Caller::Owner | Caller::Member => client,
                _ => &team.worker,
            };
            claimer.ok(CLAIM, json!({ "planId": plan })).await;
            let vars = json!({ "planId": plan, "artifacts": "PR", "status": "REVIEW" });
            client.send(SUBMIT, vars).await
        }
        // One shared plan: a new plan per caller would push the fixture's
        // logged delivery out of the webhook's log of 50.
        "rebasePlan" => {
            let query = "mutation($id: ID!) { rebasePlan(planId: $id) { basedOnVersion } }";
            client.send(query, json!({ "id": fixture.drifted })).await
        }
        "Plan.specDrift" | "Plan.specRevisions" => {
            let plan = &fixture.drifted;
            let query = match operation {
                "Plan.specDrift" => {
                    "query($id: ID!) { plan(id: $id) { specDrift { behind diff { added } } } }"
                }
                _ => {
                    "query($id: ID!) { plan(id: $id) { specRevisions { size spec diff { added } } } }"
                }
            };
            client.send(query, json!({ "id": plan })).await
        }
        "Feature.specDiff" => {
            let query =
                "query($id: ID!) { feature(id: $id) { specDiff(fromVersion: 1) { added } } }";
            client.send(query, json!({ "id": feature })).await
        }
        "FeatureVersion.diff" => {
            let query =
                "query($id: ID!) { feature(id: $id) { versions { diff(from: 1) { added } } } }";
            client.send(query, json!({ "id": feature })).await
        }
        "setPlanPriority" => {
            let plan = team.plan("prioritized", "READY").await;
            let query =
                "mutation($id: ID!) { setPlanPriority(planId: $id, priority: 0) { priority } }";
            client.send(query, json!({ "id": plan })).await
        }
        "addPlanDependency" | "removePlanDependency" => {
            let waiter = team.plan("waiter", "DRAFT").await;
            let blocker = team.plan("blocker", "DRAFT").await;
            let vars = json!({ "plan": waiter, "blocker": blocker });
            let add = "mutation($plan: ID!, $blocker: ID!) {
                addPlanDependency(planId: $plan, blockedByPlanId: $blocker) { id } }";
            if operation == "addPlanDependency" {
                client.send(add, vars).await
            } else {
                team.owner.ok(add, vars.clone()).await;
                let remove = "mutation($plan: ID!, $blocker: ID!) {
                    removePlanDependency(planId: $plan, blockedByPlanId: $blocker) { id } }";
                client.send(remove, vars).await
            }
        }
        "claimNextPlan" => {
            team.plan("next in line", "READY").await;
            let query = "mutation($project: ID!) { claimNextPlan(projectId: $project) { id } }";
            client.send(query, json!({ "project": project })).await
        }
        "heartbeatPlan" => {
            let plan = team.plan("held", "READY").await;
            let claimer = match caller {
                Caller::Owner | Caller::Member => client,
                _ => &team.worker,
            };
            claimer.ok(CLAIM, json!({ "planId": plan })).await;
            let query = "mutation($id: ID!) { heartbeatPlan(planId: $id) { leaseExpiresAt } }";
            client.send(query, json!({ "id": plan })).await
        }
        "Plan.blockedBy" | "Plan.claimToken" => {
            let plan = team.plan("read by all", "READY").await;
            let query = "query($id: ID!) { plan(id: $id) { blockedBy { id } blocks { id } isBlocked claimToken leaseExpiresAt priority } }";
            client.send(query, json!({ "id": plan })).await
        }
        "createWebhook" => {
            let vars = json!({ "projectId": project, "url": fixture.receiver.url });
            let reply = client.send(CREATE_WEBHOOK, vars).await;
            if let Some(id) = reply.data["createWebhook"]["webhook"]["id"].as_str() {
                discard_webhook(fixture, id).await;
            }
            reply
        }
        "updateWebhook" | "deleteWebhook" | "rotateWebhookSecret" => {
            let id = webhook_for(fixture).await;
            let query = match operation {
                "updateWebhook" => {
                    "mutation($id: ID!) { updateWebhook(id: $id, enabled: false) { id } }"
                }
                "deleteWebhook" => "mutation($id: ID!) { deleteWebhook(id: $id) }",
                _ => "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret } }",
            };
            let reply = client.send(query, json!({ "id": id })).await;
            discard_webhook(fixture, &id).await;
            reply
        }
        "redeliverWebhookDelivery" => {
            let query = "mutation($id: ID!) { redeliverWebhookDelivery(deliveryId: $id) { id } }";
            client.send(query, json!({ "id": fixture.delivery })).await
        }
        "Project.webhooks" => {
            client
                .send(
                    "query($id: ID!) { project(id: $id) { webhooks { id } } }",
                    json!({ "id": project }),
                )
                .await
        }
        other => panic!("no way to perform {other}"),
    }
}

async fn every_operation_for_every_caller(backend: Backend) {
    // Webhooks send to a receiver on 127.0.0.1.
    let server = Server::start_with(backend, &["--webhook-allow-private"]).await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    let delivery = logged_delivery(&team, &receiver).await;
    let bystander = team.new_member(&server, "bystander@example.com").await;
    let revoked = server.user("revoked@example.com").await;
    let keys = revoked.ok("{ apiKeys { id } }", json!({})).await;
    revoked
        .ok(
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": keys["apiKeys"][0]["id"] }),
        )
        .await;
    let clients = vec![
        team.owner.clone(),
        team.worker.clone(),
        team.viewer.clone(),
        team.outsider.clone(),
        server.anonymous(),
        revoked,
        server.admin(),
    ];
    let drifted = team.plan("drifted", "READY").await;
    team.owner
        .ok(
            "mutation($id: ID!) { updateFeature(featureId: $id, specContent: \"# v2\", newVersion: true) { id } }",
            json!({ "id": team.feature }),
        )
        .await;
    let fixture = Fixture {
        team,
        clients,
        bystander,
        receiver,
        delivery,
        drifted,
    };

    // The table covers the whole schema.
    let schema = server
        .anonymous()
        .ok(
            "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }",
            json!({}),
        )
        .await;
    let mut operations = BTreeSet::new();
    for root in ["queryType", "mutationType"] {
        for field in schema["__schema"][root]["fields"]
            .as_array()
            .expect("fields")
        {
            operations.insert(field["name"].as_str().expect("name").to_owned());
        }
    }
    // Rows named `Type.field` cover object fields with rules of their own.
    let covered: BTreeSet<String> = matrix()
        .iter()
        .filter(|(name, _)| !name.contains('.'))
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(
        covered, operations,
        "every query and mutation needs a row in the matrix"
    );

    let mut failures = Vec::new();
    for (operation, row) in matrix() {
        for (caller, expected) in CALLERS.iter().zip(row) {
            let reply = perform(&fixture, operation, *caller).await;
            let actual = reply.errors.first().map(|_| reply.code().to_owned());
            if actual.as_deref() != expected {
                failures.push(format!(
                    "{operation} as {caller:?}: expected {expected:?}, got {actual:?} {:?}",
                    reply.errors
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix mismatches:\n{}",
        failures.join("\n")
    );
}

/// The id of a delivery in the log of a webhook of the team's project.
async fn logged_delivery(team: &Team, receiver: &Receiver) -> String {
    let vars = json!({ "projectId": team.project, "url": receiver.url });
    let created = team
        .owner
        .ok(
            "mutation($projectId: ID!, $url: String!) {
               createWebhook(projectId: $projectId, url: $url, eventKinds: [CREATED]) { webhook { id } } }",
            vars,
        )
        .await;
    let webhook = created["createWebhook"]["webhook"]["id"].clone();
    team.plan("delivered", "DRAFT").await;
    let query = "query($id: ID!) { project(id: $id) { webhooks { id deliveries { id } } } }";
    eventually(std::time::Duration::from_secs(30), async || {
        let data = team.owner.ok(query, json!({ "id": team.project })).await;
        let hooks = data["project"]["webhooks"].as_array()?.clone();
        let hook = hooks.into_iter().find(|hook| hook["id"] == webhook)?;
        hook["deliveries"][0]["id"].as_str().map(str::to_owned)
    })
    .await
}
