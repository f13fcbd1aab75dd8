//! What agents and leads read along the workflow: retried submits, review
//! policies, work sent back from review, plans held back by failed
//! blockers, events the server makes, and specs one instance cannot see.

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    a_submit_retried_after_it_went_through_answers_the_accepted_result,
    a_review_policy_decides_who_approves,
    work_sent_back_keeps_its_lease_and_note_and_comes_back_to_its_worker_first,
    plans_held_back_by_a_failed_blocker_are_listed_for_a_lead,
    events_the_server_makes_name_their_cause_and_no_person,
);

const CLAIM_WITH_LEASE: &str = "mutation($planId: ID!, $lease: Int) {
    claimPlan(planId: $planId, leaseSeconds: $lease) { id claimToken leaseExpiresAt } }";

const SUBMIT_WITH_TOKEN: &str = "mutation($planId: ID!, $artifacts: String!, $status: SubmitStatus!, $token: String) {
    submitWork(planId: $planId, artifactsMarkdown: $artifacts, status: $status, claimToken: $token) {
      plan { id status workArtifacts submittedBy { email } } featureVersion { version } } }";

const SEND_BACK: &str = "mutation($planId: ID!, $status: PlanStatus!, $note: String) {
    setPlanStatus(planId: $planId, status: $status, note: $note) { id status claimedBy { email } leaseExpiresAt } }";

const HISTORY: &str = "query($id: ID!) { plan(id: $id) {
    events { kind fromStatus toStatus actor { email } note } } }";

const SET_POLICY: &str = "mutation($projectId: ID!, $policy: ReviewPolicy!) {
    setProjectReviewPolicy(projectId: $projectId, policy: $policy) { reviewPolicy } }";

async fn history(client: &Client, plan: &str) -> Vec<Value> {
    let data = client.ok(HISTORY, json!({ "id": plan })).await;
    data["plan"]["events"].as_array().expect("events").clone()
}

/// The claim's token, from the claim's own answer.
async fn claim(team: &Team, plan: &str, lease: Option<i64>) -> String {
    let vars = json!({ "planId": plan, "lease": lease });
    let claimed = team.worker.ok(CLAIM_WITH_LEASE, vars).await;
    claimed["claimPlan"]["claimToken"]
        .as_str()
        .expect("a token in the claim's answer")
        .to_owned()
}

async fn a_submit_retried_after_it_went_through_answers_the_accepted_result(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    for target in ["REVIEW", "COMPLETED"] {
        let plan = team.plan(&format!("submitted to {target}"), "READY").await;
        let token = claim(&team, &plan, None).await;
        let vars =
            json!({ "planId": plan, "artifacts": "PR #7", "status": target, "token": token });
        let first = team.worker.ok(SUBMIT_WITH_TOKEN, vars.clone()).await;
        let events = history(&team.owner, &plan).await.len();

        // The answer was lost; the agent sends the same submit again.
        let again = team.worker.ok(SUBMIT_WITH_TOKEN, vars.clone()).await;
        assert_eq!(again, first, "the accepted result, once more");
        assert_eq!(again["submitWork"]["plan"]["status"], target);
        assert_eq!(
            history(&team.owner, &plan).await.len(),
            events,
            "nothing happened twice"
        );

        // Other work under the same token is no repeat: the claim is over.
        let other =
            json!({ "planId": plan, "artifacts": "PR #8", "status": target, "token": token });
        let reply = team.worker.send(SUBMIT_WITH_TOKEN, other).await;
        assert_eq!(reply.code(), "CONFLICT");
        assert_eq!(reply.errors[0]["extensions"]["reason"], "STALE_CLAIM");
        // Nor is the same submit by someone else.
        let reply = team.owner.send(SUBMIT_WITH_TOKEN, vars).await;
        assert_eq!(reply.code(), "CONFLICT", "{:?}", reply.errors);
    }
}

async fn a_review_policy_decides_who_approves(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let colleague = team.new_member(&server, "colleague@example.com").await;
    let project = json!({ "projectId": team.project, "policy": "OTHER_THAN_SUBMITTER" });
    assert_eq!(
        team.worker.code(SET_POLICY, project.clone()).await,
        "FORBIDDEN"
    );
    let set = team.owner.ok(SET_POLICY, project).await;
    assert_eq!(
        set["setProjectReviewPolicy"]["reviewPolicy"],
        "OTHER_THAN_SUBMITTER"
    );

    // No self-approval: neither by completing one's own claim straight away…
    let direct = team.plan("straight to completed", "READY").await;
    claim(&team, &direct, None).await;
    let vars = json!({ "planId": direct, "artifacts": "PR", "status": "COMPLETED" });
    let refused = team.worker.send(SUBMIT_WITH_TOKEN, vars).await;
    assert_eq!(refused.code(), "FORBIDDEN");
    assert_eq!(
        refused.message(),
        "This project reviews work before it is completed: submit it with status REVIEW; any member or owner of the project other than the submitter can then approve it"
    );
    // … nor by approving one's own review.
    let reviewed = team.plan_in("reviewed", "REVIEW").await;
    let approve = json!({ "planId": reviewed, "status": "COMPLETED" });
    let refused = team.worker.send(SET_STATUS, approve.clone()).await;
    assert_eq!(refused.code(), "FORBIDDEN");
    assert_eq!(
        refused.message(),
        "This project's review policy (OTHER_THAN_SUBMITTER) does not let you approve this work: any member or owner of the project other than the submitter can approve it"
    );
    let approved = colleague.ok(SET_STATUS, approve).await;
    assert_eq!(approved["setPlanStatus"]["status"], "COMPLETED");

    // OWNERS: a member approves nothing, an owner does.
    let vars = json!({ "projectId": team.project, "policy": "OWNERS" });
    team.owner.ok(SET_POLICY, vars).await;
    let reviewed = team.plan_in("for an owner", "REVIEW").await;
    let approve = json!({ "planId": reviewed, "status": "COMPLETED" });
    assert_eq!(
        colleague.code(SET_STATUS, approve.clone()).await,
        "FORBIDDEN"
    );
    let approved = team.owner.ok(SET_STATUS, approve).await;
    assert_eq!(approved["setPlanStatus"]["status"], "COMPLETED");
    let read = team
        .viewer
        .ok(
            "query($id: ID!) { project(id: $id) { reviewPolicy } }",
            json!({ "id": team.project }),
        )
        .await;
    assert_eq!(read["project"]["reviewPolicy"], "OWNERS");
}

async fn work_sent_back_keeps_its_lease_and_note_and_comes_back_to_its_worker_first(
    backend: Backend,
) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let urgent = team.plan("urgent and ready", "READY").await;
    let vars = json!({ "planId": urgent, "priority": 0 });
    team.owner
        .ok(
            "mutation($planId: ID!, $priority: Int!) { setPlanPriority(planId: $planId, priority: $priority) { id } }",
            vars,
        )
        .await;
    let plan = team.plan("sent back", "READY").await;
    let token = claim(&team, &plan, Some(600)).await;
    let vars = json!({ "planId": plan, "artifacts": "PR #1", "status": "REVIEW", "token": token });
    team.worker.ok(SUBMIT_WITH_TOKEN, vars).await;

    let note = "Add a test for the empty list";
    let vars = json!({ "planId": plan, "status": "IN_PROGRESS", "note": note });
    let back = team.owner.ok(SEND_BACK, vars).await["setPlanStatus"].clone();
    assert_eq!(back["status"], "IN_PROGRESS");
    assert_eq!(back["claimedBy"]["email"], "worker@example.com");
    // The claim asked for 10 minutes: the lease is that long, not a day.
    let expires =
        chrono::DateTime::parse_from_rfc3339(back["leaseExpiresAt"].as_str().expect("lease"))
            .expect("RFC 3339");
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((500..=600).contains(&left), "{left} s left on the lease");
    let sent_back = history(&team.owner, &plan).await.pop().expect("an event");
    assert_eq!(sent_back["fromStatus"], "REVIEW");
    assert_eq!(sent_back["toStatus"], "IN_PROGRESS");
    assert_eq!(sent_back["actor"]["email"], "owner@example.com");
    assert_eq!(sent_back["note"], note);

    // Its worker's next claim returns it, before a more urgent ready plan…
    let next =
        "mutation($project: ID!) { claimNextPlan(projectId: $project) { id status claimToken } }";
    let vars = json!({ "project": team.project });
    let returned = team.worker.ok(next, vars.clone()).await["claimNextPlan"].clone();
    assert_eq!(returned["id"], plan.as_str());
    assert_eq!(returned["status"], "IN_PROGRESS");
    let token = returned["claimToken"].as_str().expect("the claim's token");
    let vars_update = json!({ "planId": plan, "spec": "tests added", "token": token });
    team.worker
        .ok(
            "mutation($planId: ID!, $spec: String!, $token: String) { updatePlan(planId: $planId, specContent: $spec, claimToken: $token) { id } }",
            vars_update,
        )
        .await;
    // … which anyone else gets.
    let other = team.owner.ok(next, vars).await["claimNextPlan"].clone();
    assert_eq!(other["id"], urgent.as_str());
}

async fn plans_held_back_by_a_failed_blocker_are_listed_for_a_lead(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let failed = team.plan_in("failed", "FAILED").await;
    let open = team.plan("open", "READY").await;
    let behind_failed = team.plan("behind the failed one", "READY").await;
    let behind_open = team.plan("behind the open one", "READY").await;
    let add = "mutation($plan: ID!, $blocker: ID!) {
        addPlanDependency(planId: $plan, blockedByPlanId: $blocker) { id } }";
    for (waiter, blocker) in [(&behind_failed, &failed), (&behind_open, &open)] {
        let vars = json!({ "plan": waiter, "blocker": blocker });
        team.owner.ok(add, vars).await;
    }
    let list = "query($project: ID!, $blocked: Boolean, $failed: Boolean) {
        plans(projectId: $project, blocked: $blocked, blockedByFailed: $failed) { totalCount nodes { title } } }";
    let titles = async |blocked: Value, failed: Value| -> Vec<String> {
        let vars = json!({ "project": team.project, "blocked": blocked, "failed": failed });
        let data = team.viewer.ok(list, vars).await;
        let nodes = data["plans"]["nodes"].as_array().expect("nodes");
        assert_eq!(data["plans"]["totalCount"], nodes.len());
        nodes
            .iter()
            .map(|node| node["title"].as_str().expect("title").to_owned())
            .collect()
    };
    assert_eq!(
        titles(Value::Null, json!(true)).await,
        ["behind the failed one"]
    );
    assert_eq!(
        titles(json!(true), Value::Null).await,
        ["behind the failed one", "behind the open one"]
    );
    assert_eq!(titles(json!(false), Value::Null).await, ["failed", "open"]);

    // A viewer asking for any plan is told it cannot claim, not that the
    // plan is taken.
    let taken = team.plan_in("taken", "CLAIMED").await;
    let refused = team.viewer.send(CLAIM, json!({ "planId": taken })).await;
    assert_eq!(refused.code(), "FORBIDDEN", "{:?}", refused.errors);

    // The refusal says what a person must do.
    let refused = team
        .worker
        .send(CLAIM, json!({ "planId": behind_failed }))
        .await;
    assert_eq!(refused.code(), "CONFLICT");
    assert!(
        refused.message().contains("removePlanDependency"),
        "{}",
        refused.message()
    );
}

async fn events_the_server_makes_name_their_cause_and_no_person(backend: Backend) {
    let server = Server::start_with(backend, &["--sweep-every", "200ms"]).await;
    let team = Team::new(&server).await;
    let first = team.plan("Login form", "READY").await;
    let waiter = team.plan("Logout button", "READY").await;
    let add = "mutation($plan: ID!, $blocker: ID!) {
        addPlanDependency(planId: $plan, blockedByPlanId: $blocker) { id } }";
    team.worker
        .ok(add, json!({ "plan": waiter, "blocker": first }))
        .await;
    claim(&team, &first, None).await;
    let vars = json!({ "planId": first, "artifacts": "PR", "status": "COMPLETED" });
    team.worker.ok(SUBMIT_WITH_TOKEN, vars).await;
    let unblocked = history(&team.owner, &waiter).await.pop().expect("an event");
    assert_eq!(unblocked["kind"], "UNBLOCKED");
    assert_eq!(unblocked["actor"], Value::Null, "no person unblocked it");
    assert_eq!(unblocked["note"], "plan \"Login form\" was completed");

    // A claim whose lease runs out stalls, by the server's sweep.
    claim(&team, &waiter, Some(1)).await;
    let stalled = eventually(std::time::Duration::from_secs(20), async || {
        let event = history(&team.owner, &waiter).await.pop()?;
        (event["kind"] == "STALLED").then_some(event)
    })
    .await;
    assert_eq!(stalled["actor"], Value::Null);
    assert_eq!(
        stalled["note"],
        "the claim's lease ran out with no activity from its claimer"
    );
}

/// Two instances on one PostgreSQL, each with specs in a directory of its
/// own: what one wrote the other cannot read, and says so instead of
/// failing with INTERNAL while claiming to be ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_missing_from_this_instances_store_is_named_and_unready() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let first = Server::start(backend).await;
    let team = Team::new(&first).await;
    let plan = team.plan("written through the first", "READY").await;
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let store = format!("fs:{}", elsewhere.path().display());
    let second = Server::launch(first.database.clone(), vec!["--spec-store".into(), store]).await;

    let read = "query($id: ID!) { plan(id: $id) { title spec } }";
    let reply = second
        .as_client(&team.worker)
        .send(read, json!({ "id": plan }))
        .await;
    assert_eq!(reply.code(), "STORAGE_UNAVAILABLE", "{:?}", reply.errors);
    assert!(
        reply.message().starts_with("The spec object ")
            && reply
                .message()
                .contains("instances that share a database must share one spec store"),
        "{}",
        reply.message()
    );
    assert_eq!(reply.data["plan"]["title"], "written through the first");

    let (status, body) = second.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["specStore"], "missing objects");
    let (status, body) = first.readyz().await;
    assert_eq!((status, &body["specStore"]), (200, &json!("ok")));
}
