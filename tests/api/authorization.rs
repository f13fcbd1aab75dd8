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
        // Mutations.
        ("createUser", admins()),
        ("createProject", anyone()),
        ("createApiKey", anyone()),
        ("revokeApiKey", anyone()),
        ("addProjectMember", owners()),
        ("removeProjectMember", owners()),
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
    ]
}

struct Fixture {
    team: Team,
    clients: Vec<Client>,
    /// A member nobody else is, whose claims the others try to release.
    bystander: Client,
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
        other => panic!("no way to perform {other}"),
    }
}

async fn every_operation_for_every_caller(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
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
    let fixture = Fixture {
        team,
        clients,
        bystander,
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
    let covered: BTreeSet<String> = matrix()
        .iter()
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
