//! Spec drift: plans know the feature version (and spec) they were written
//! against, learn live when the feature moves on, see exactly what changed,
//! and can be rebased; plan spec revisions and the diffs between them.

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    a_new_spec_drifts_open_plans_and_rebase_clears_it,
    amending_the_current_spec_drifts_open_plans,
    plan_lists_filter_by_drift_and_features_count_it,
    rebase_follows_the_workflow_rules,
    spec_revisions_keep_every_plan_spec_with_diffs,
    feature_versions_diff_against_each_other,
    a_large_diff_is_cut_and_says_so,
    claim_next_can_skip_drifted_plans,
);

on_every_store!(drift_diffs_of_a_page_read_each_spec_once_from_the_store);

const FEATURE_SPEC: &str = "# Auth\nUsers sign in.";

const DRIFT: &str = "query($id: ID!) { plan(id: $id) { basedOnVersion status
    specDrift { fromVersion toVersion behind diff { unified added removed truncated } }
    events { kind fromStatus toStatus actor { email } } } }";

const UPDATE_FEATURE: &str = "mutation($id: ID!, $spec: String, $title: String, $newVersion: Boolean) {
    updateFeature(featureId: $id, specContent: $spec, title: $title, newVersion: $newVersion) { currentVersion } }";

const REBASE: &str = "mutation($planId: ID!, $spec: String) {
    rebasePlan(planId: $planId, specContent: $spec) { id status basedOnVersion specDrift { behind } spec } }";

async fn drift_of(client: &Client, plan: &str) -> Value {
    client.ok(DRIFT, json!({ "id": plan })).await["plan"].clone()
}

fn kinds(plan: &Value) -> Vec<String> {
    plan["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["kind"].as_str().expect("kind").to_owned())
        .collect()
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|each| *each == kind).count()
}

async fn a_new_spec_drifts_open_plans_and_rebase_clears_it(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let stale = team.plan("written on v1", "READY").await;
    let draft = team.plan("draft on v1", "DRAFT").await;
    let failed = team.plan_in("failed on v1", "FAILED").await;
    let fresh = drift_of(&team.worker, &stale).await;
    assert_eq!(fresh["basedOnVersion"], 1);
    assert_eq!(fresh["specDrift"], Value::Null);

    let mut board = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "planId": stale }))
        .await;
    server.wait_for_subscriptions(1).await;

    // Another plan completes: v2, with the same spec text, is no drift.
    let done = team.plan_in("implemented", "COMPLETED").await;
    let unchanged = drift_of(&team.worker, &stale).await;
    assert_eq!(unchanged["specDrift"], Value::Null);
    assert_eq!(kinds(&unchanged), ["CREATED"]);

    // A new version with a new spec: the diff shows exactly the changed
    // lines, and the event names the change as its cause, made by no one.
    let v3 = "# Auth\nUsers sign in with a passkey.\nSessions last a day.";
    team.owner
        .ok(
            UPDATE_FEATURE,
            json!({ "id": team.feature, "spec": v3, "newVersion": true }),
        )
        .await;
    let event = board.next_event().await;
    assert_eq!(event["kind"], "SPEC_DRIFTED");
    assert_eq!(event["plan"]["id"], stale.as_str());
    assert_eq!(event["fromStatus"], "READY");
    assert_eq!(event["toStatus"], "READY");
    assert_eq!(event["actor"], Value::Null);
    assert_eq!(
        event["note"],
        "owner@example.com changed the feature's spec (now v3)"
    );
    let drifted = drift_of(&team.worker, &stale).await;
    assert_eq!(drifted["basedOnVersion"], 1);
    assert_eq!(
        drifted["specDrift"],
        json!({ "fromVersion": 1, "toVersion": 3, "behind": 2,
                "diff": {
                    "unified": "--- v1 (as the plan read it)\n+++ v3 (current)\n@@ -1,2 +1,3 @@\n # Auth\n-Users sign in.\n\\ No newline at end of file\n+Users sign in with a passkey.\n+Sessions last a day.\n\\ No newline at end of file\n",
                    "added": 2, "removed": 1, "truncated": false } })
    );
    assert_eq!(count(&kinds(&drifted), "SPEC_DRIFTED"), 1);
    assert_eq!(
        count(&kinds(&drift_of(&team.owner, &draft).await), "SPEC_DRIFTED"),
        1
    );

    // Yet another spec: an already drifted plan is not told again.
    let v4 = "# Auth\nUsers sign in with a passkey.\nSessions last a week.";
    team.owner
        .ok(
            UPDATE_FEATURE,
            json!({ "id": team.feature, "spec": v4, "newVersion": true }),
        )
        .await;
    let drifted = drift_of(&team.worker, &stale).await;
    assert_eq!(drifted["specDrift"]["behind"], 3);
    assert_eq!(
        count(&kinds(&drifted), "SPEC_DRIFTED"),
        1,
        "an already drifted plan is not told again"
    );

    // Finished plans are never flagged, and got no event.
    for finished in [&failed, &done] {
        let plan = drift_of(&team.owner, finished).await;
        assert_eq!(plan["specDrift"], Value::Null, "{}", plan["status"]);
        assert_eq!(count(&kinds(&plan), "SPEC_DRIFTED"), 0);
    }

    // Rebasing clears the drift and is recorded.
    let rebased = team.worker.ok(REBASE, json!({ "planId": stale })).await;
    assert_eq!(rebased["rebasePlan"]["basedOnVersion"], 4);
    assert_eq!(rebased["rebasePlan"]["specDrift"], Value::Null);
    assert_eq!(rebased["rebasePlan"]["status"], "READY");
    let event = board.next_event().await;
    assert_eq!(event["kind"], "REBASED");
    assert_eq!(event["actor"]["email"], "worker@example.com");

    // Rebased, the plan is told again when the feature's spec next changes.
    let vars = json!({ "id": team.feature, "spec": FEATURE_SPEC, "newVersion": true });
    team.owner.ok(UPDATE_FEATURE, vars).await;
    let event = board.next_event().await;
    assert_eq!(event["kind"], "SPEC_DRIFTED");
    assert_eq!(event["actor"], Value::Null);
    assert_eq!(
        event["note"],
        "owner@example.com changed the feature's spec (now v5)"
    );
    assert_eq!(
        kinds(&drift_of(&team.owner, &stale).await),
        ["CREATED", "SPEC_DRIFTED", "REBASED", "SPEC_DRIFTED"]
    );
}

async fn amending_the_current_spec_drifts_open_plans(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan_in("in progress", "IN_PROGRESS").await;

    // A title change or the same text again amends nothing.
    let vars = json!({ "id": team.feature, "title": "Auth", "spec": FEATURE_SPEC });
    team.owner.ok(UPDATE_FEATURE, vars).await;
    assert_eq!(
        drift_of(&team.worker, &plan).await["specDrift"],
        Value::Null
    );

    let amended = "# Auth\nUsers sign in.\nAnd out.";
    let vars = json!({ "id": team.feature, "spec": amended });
    let updated = team.owner.ok(UPDATE_FEATURE, vars).await;
    assert_eq!(updated["updateFeature"]["currentVersion"], 1);
    let drifted = drift_of(&team.worker, &plan).await;
    assert_eq!(
        drifted["specDrift"],
        json!({ "fromVersion": 1, "toVersion": 1, "behind": 0,
                "diff": { "unified": "--- v1 (as the plan read it)\n+++ v1 (current)\n@@ -1,2 +1,3 @@\n # Auth\n-Users sign in.\n\\ No newline at end of file\n+Users sign in.\n+And out.\n\\ No newline at end of file\n",
                          "added": 2, "removed": 1, "truncated": false } })
    );
    let kinds = kinds(&drifted);
    assert_eq!(count(&kinds, "SPEC_DRIFTED"), 1);
    assert_eq!(
        drifted["events"]
            .as_array()
            .expect("events")
            .last()
            .expect("event")["fromStatus"],
        "IN_PROGRESS"
    );

    // Amending it back to the text the plan was written against: up to date again.
    let vars = json!({ "id": team.feature, "spec": FEATURE_SPEC });
    team.owner.ok(UPDATE_FEATURE, vars).await;
    assert_eq!(
        drift_of(&team.worker, &plan).await["specDrift"],
        Value::Null
    );
}

async fn plan_lists_filter_by_drift_and_features_count_it(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let draft = team.plan("draft", "DRAFT").await;
    let ready = team.plan("ready", "READY").await;
    let vars = json!({ "id": team.feature, "spec": "# Auth\nv2", "newVersion": true });
    team.owner.ok(UPDATE_FEATURE, vars).await;
    let later = team.plan("written on v2", "READY").await;
    team.worker.ok(REBASE, json!({ "planId": ready })).await;
    // The completion cuts v3 with the same text: nothing drifts.
    team.plan_in("completed on v2", "COMPLETED").await;
    // A new spec in v4: the v2 plans drift; rebase one of them.
    let vars = json!({ "id": team.feature, "spec": "# Auth\nv4", "newVersion": true });
    team.owner.ok(UPDATE_FEATURE, vars).await;
    team.worker.ok(REBASE, json!({ "planId": later })).await;

    let list = "query($feature: ID!, $drifted: Boolean) {
        plans(featureId: $feature, drifted: $drifted) { totalCount nodes { title } }
        feature(id: $feature) { driftedPlanCount plans(drifted: $drifted) { totalCount } } }";
    let titles = |data: &Value| -> Vec<String> {
        data["plans"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|node| node["title"].as_str().expect("title").to_owned())
            .collect()
    };
    let drifted = team
        .viewer
        .ok(list, json!({ "feature": team.feature, "drifted": true }))
        .await;
    assert_eq!(titles(&drifted), ["draft", "ready"]);
    assert_eq!(drifted["plans"]["totalCount"], 2);
    assert_eq!(drifted["feature"]["driftedPlanCount"], 2);
    assert_eq!(drifted["feature"]["plans"]["totalCount"], 2);
    let current = team
        .viewer
        .ok(list, json!({ "feature": team.feature, "drifted": false }))
        .await;
    assert_eq!(titles(&current), ["written on v2", "completed on v2"]);
    assert_eq!(current["feature"]["plans"]["totalCount"], 2);
    let _ = draft;

    // Outsiders see none of it.
    let outsider = team
        .outsider
        .ok("{ plans(drifted: true) { totalCount } }", json!({}))
        .await;
    assert_eq!(outsider["plans"]["totalCount"], 0);
}

async fn rebase_follows_the_workflow_rules(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let bystander = team.new_member(&server, "bystander@example.com").await;
    let held = team.plan_in("held by the worker", "CLAIMED").await;
    let done = team.plan_in("done", "COMPLETED").await;
    let vars = json!({ "id": team.feature, "spec": "# Auth\nv3", "newVersion": true });
    team.owner.ok(UPDATE_FEATURE, vars).await;
    assert_eq!(
        drift_of(&team.worker, &held).await["specDrift"]["behind"],
        2
    );

    let vars = json!({ "planId": held });
    assert_eq!(team.viewer.code(REBASE, vars.clone()).await, "FORBIDDEN");
    assert_eq!(team.outsider.code(REBASE, vars.clone()).await, "FORBIDDEN");
    assert_eq!(bystander.code(REBASE, vars.clone()).await, "FORBIDDEN");
    let with_spec = json!({ "planId": held, "spec": "# Held\nRewritten for v2" });
    assert_eq!(
        team.owner.code(REBASE, with_spec.clone()).await,
        "FORBIDDEN"
    );
    assert_eq!(
        team.worker
            .code(REBASE, json!({ "planId": held, "spec": "  " }))
            .await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        team.worker.code(REBASE, json!({ "planId": done })).await,
        "CONFLICT"
    );
    assert_eq!(
        team.worker.code(REBASE, json!({ "planId": "nope" })).await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        drift_of(&team.worker, &held).await["specDrift"]["behind"],
        2,
        "refusals change nothing"
    );

    // The claimer rebases with a new spec: one change, like updatePlan.
    let rebased = team.worker.ok(REBASE, with_spec).await["rebasePlan"].clone();
    assert_eq!(rebased["status"], "IN_PROGRESS");
    assert_eq!(rebased["basedOnVersion"], 3);
    assert_eq!(rebased["spec"], "# Held\nRewritten for v2");
    let plan = drift_of(&team.worker, &held).await;
    assert_eq!(kinds(&plan).last().map(String::as_str), Some("REBASED"));
    assert_eq!(count(&kinds(&plan), "UPDATED"), 0);

    // An owner may rebase a held plan without replacing its spec.
    let vars = json!({ "id": team.feature, "spec": "# Auth\nv4", "newVersion": true });
    team.owner.ok(UPDATE_FEATURE, vars).await;
    let owner = team.owner.ok(REBASE, json!({ "planId": held })).await;
    assert_eq!(owner["rebasePlan"]["basedOnVersion"], 4);
    assert_eq!(owner["rebasePlan"]["status"], "IN_PROGRESS");
}

async fn spec_revisions_keep_every_plan_spec_with_diffs(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan("revised", "READY").await;
    for spec in [
        "# revised\nStep one\nStep two",
        "# revised\nStep one\nStep 2\nStep three",
    ] {
        team.worker
            .ok(UPDATE_PLAN, json!({ "planId": plan, "spec": spec }))
            .await;
    }
    let query = "query($id: ID!) { plan(id: $id) { specRevisions {
        number at by { email } size spec diff { unified added removed } first: diff(from: 1) { added removed } } } }";
    let data = team.viewer.ok(query, json!({ "id": plan })).await;
    let revisions = data["plan"]["specRevisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 3);
    assert_eq!(revisions[0]["by"]["email"], "owner@example.com");
    assert_eq!(revisions[0]["spec"], "# revised\n\n## Steps\n1. Build it");
    assert_eq!(revisions[0]["diff"], Value::Null);
    assert_eq!(revisions[2]["number"], 3);
    assert_eq!(revisions[2]["by"]["email"], "worker@example.com");
    assert_eq!(
        revisions[2]["size"],
        "# revised\nStep one\nStep 2\nStep three".len()
    );
    assert_eq!(
        revisions[2]["diff"],
        json!({ "unified": "--- revision 2\n+++ revision 3\n@@ -1,3 +1,4 @@\n # revised\n Step one\n-Step two\n\\ No newline at end of file\n+Step 2\n+Step three\n\\ No newline at end of file\n",
                "added": 2, "removed": 1 })
    );
    assert_eq!(revisions[2]["first"], json!({ "added": 3, "removed": 3 }));
    let at = |index: usize| revisions[index]["at"].as_str().expect("at").to_owned();
    assert!(at(0) <= at(1) && at(1) <= at(2));

    let bad = "query($id: ID!) { plan(id: $id) { specRevisions { diff(from: 9) { added } } } }";
    assert_eq!(
        team.viewer.code(bad, json!({ "id": plan })).await,
        "BAD_USER_INPUT"
    );
}

async fn feature_versions_diff_against_each_other(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let v2 = "# Auth\nUsers sign in.\nAdmins too.\n";
    team.owner
        .ok(
            UPDATE_FEATURE,
            json!({ "id": team.feature, "spec": v2, "newVersion": true }),
        )
        .await;
    let query = "query($id: ID!) { feature(id: $id) {
        whole: specDiff(fromVersion: 1) { added removed truncated }
        same: specDiff(fromVersion: 2, toVersion: 2) { unified added removed }
        versions { version diff { added removed } } } }";
    let data = team.viewer.ok(query, json!({ "id": team.feature })).await;
    let feature = &data["feature"];
    assert_eq!(
        feature["whole"],
        json!({ "added": 2, "removed": 1, "truncated": false })
    );
    assert_eq!(
        feature["same"],
        json!({ "unified": "", "added": 0, "removed": 0 })
    );
    assert_eq!(feature["versions"][0]["diff"], Value::Null);
    assert_eq!(
        feature["versions"][1]["diff"],
        json!({ "added": 2, "removed": 1 })
    );
    let missing = "query($id: ID!) { feature(id: $id) { specDiff(fromVersion: 7) { added } } }";
    let reply = team
        .viewer
        .send(missing, json!({ "id": team.feature }))
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert!(
        reply.message().contains("no version 7"),
        "{}",
        reply.message()
    );
}

async fn a_large_diff_is_cut_and_says_so(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let lines = |word: &str| -> String {
        (0..20_000)
            .map(|line| format!("{word} line {line:05} of the spec\n"))
            .collect()
    };
    let (old, new) = (lines("old"), lines("new"));
    assert!(old.len() > 500_000 && old.len() < 1024 * 1024);
    let project = &team.project;
    let feature = team.owner.create_feature(project, "Big", &old).await;
    let plan = team.plan_of(&feature, "big plan", "READY").await;
    team.owner
        .ok(
            UPDATE_FEATURE,
            json!({ "id": feature, "spec": new, "newVersion": true }),
        )
        .await;
    let data = team
        .worker
        .ok(
            "query($id: ID!) { plan(id: $id) { specDrift { diff { unified added removed truncated } } } }",
            json!({ "id": plan }),
        )
        .await;
    let diff = &data["plan"]["specDrift"]["diff"];
    assert_eq!(diff["truncated"], true);
    assert_eq!(diff["added"], 20_000);
    assert_eq!(diff["removed"], 20_000);
    let unified = diff["unified"].as_str().expect("unified");
    assert!(unified.len() <= 256 * 1024, "{}", unified.len());
    assert!(unified.len() > 200 * 1024, "{}", unified.len());
    assert!(unified.ends_with('\n'));
}

async fn drift_diffs_of_a_page_read_each_spec_once_from_the_store(kind: StoreKind) {
    let Some(store) = SpecBucket::new(kind).await else {
        return;
    };
    let server = Server::start_on_store(&store, &[]).await;
    let team = Team::new(&server).await;
    for index in 0..5 {
        team.plan(&format!("plan {index}"), "READY").await;
    }
    let v2 = "# Auth\nUsers sign in.\nWith passkeys.";
    team.owner
        .ok(
            UPDATE_FEATURE,
            json!({ "id": team.feature, "spec": v2, "newVersion": true }),
        )
        .await;
    // A fresh process: nothing cached, every spec comes from the store.
    let server = server.restart().await;
    let owner = server.as_client(&team.owner);
    let before = server
        .metrics()
        .await
        .get("plangraph_spec_store_calls_total{operation=\"get\"}");
    let data = owner
        .ok(
            "query($id: ID!) { plans(featureId: $id) { nodes {
               specDrift { behind diff { added removed } } } } }",
            json!({ "id": team.feature }),
        )
        .await;
    let nodes = data["plans"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 5);
    for node in nodes {
        assert_eq!(
            node["specDrift"],
            json!({ "behind": 1, "diff": { "added": 2, "removed": 1 } })
        );
    }
    let after = server
        .metrics()
        .await
        .get("plangraph_spec_store_calls_total{operation=\"get\"}");
    assert_eq!(
        after - before,
        2.0,
        "five diffs read the two feature specs once each, not once per plan"
    );
}

/// A fleet can leave stale plans for someone who re-reads the feature: with
/// `skipDrifted` claimNextPlan passes over an older drifted plan (and returns
/// null when only drifted ones are left); without it, the drifted plan is
/// claimed as the oldest.
async fn claim_next_can_skip_drifted_plans(backend: Backend) {
    const CLAIM_NEXT: &str = "mutation($project: ID!, $skip: Boolean) {
        claimNextPlan(projectId: $project, skipDrifted: $skip) { id } }";
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let stale = team.plan("written on v1", "READY").await;
    // A completion cuts v2 with the same text: the plan is not stale yet.
    team.plan_in("implemented", "COMPLETED").await;
    assert_eq!(
        drift_of(&team.worker, &stale).await["specDrift"],
        Value::Null
    );
    let vars = json!({ "id": team.feature, "spec": "# Auth\nv3", "newVersion": true });
    team.owner.ok(UPDATE_FEATURE, vars).await;
    assert_eq!(
        drift_of(&team.worker, &stale).await["specDrift"]["behind"],
        2
    );
    let current = team.plan("written on v3", "READY").await;

    let skip = json!({ "project": team.project, "skip": true });
    let next = team.worker.ok(CLAIM_NEXT, skip.clone()).await;
    assert_eq!(
        next["claimNextPlan"]["id"],
        current.as_str(),
        "the drifted plan is older but skipped"
    );
    let none = team.worker.ok(CLAIM_NEXT, skip).await;
    assert_eq!(
        none["claimNextPlan"],
        Value::Null,
        "only a drifted plan is left"
    );

    let next = team
        .worker
        .ok(CLAIM_NEXT, json!({ "project": team.project }))
        .await;
    assert_eq!(
        next["claimNextPlan"]["id"],
        stale.as_str(),
        "by default drift does not matter"
    );
}
