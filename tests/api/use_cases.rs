//! The seed's "Common Use Cases", one scenario each, against the real server.

use std::time::Duration;

use crate::helpers::*;
use serde_json::json;

on_both_databases!(
    publish_a_plan,
    find_and_claim_work,
    track_progress,
    submit_for_review_then_complete,
    submit_directly_as_completed,
    stalled_plan_goes_back_to_ready,
    release_a_plan,
    failed_plan_keeps_its_artifacts,
    review_sent_back_returns_the_claim_to_the_submitter,
    filter_plans_by_feature_and_status,
    update_a_feature_in_place_or_as_a_new_version,
);

async fn publish_a_plan(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let created = team
        .owner
        .ok(
            "mutation($featureId: ID!) { createPlan(featureId: $featureId, title: \"OAuth 2.0\",
               description: \"Passport.js\", specContent: \"# OAuth plan\") {
               id status description spec feature { id } createdAt updatedAt } }",
            json!({ "featureId": team.feature }),
        )
        .await;
    let plan = &created["createPlan"];
    assert_eq!(plan["status"], "DRAFT", "plans start as drafts");
    assert_eq!(plan["spec"], "# OAuth plan");
    assert_eq!(plan["feature"]["id"], team.feature.as_str());
    let id = plan["id"].as_str().expect("id");

    let ready_query = "query($projectId: ID) { plans(projectId: $projectId, status: [READY]) { totalCount nodes { id } } }";
    let vars = json!({ "projectId": team.project });
    let before = team.worker.ok(ready_query, vars.clone()).await;
    assert_eq!(
        before["plans"]["totalCount"], 0,
        "a draft is not offered to workers"
    );

    let ready = team
        .owner
        .ok(SET_STATUS, json!({ "planId": id, "status": "READY" }))
        .await;
    assert_eq!(ready["setPlanStatus"]["status"], "READY");
    let after = team.worker.ok(ready_query, vars).await;
    assert_eq!(after["plans"]["totalCount"], 1);
    assert_eq!(after["plans"]["nodes"][0]["id"], id);
}

async fn find_and_claim_work(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan("WebSocket notifications", "READY").await;
    team.plan("Still a draft", "DRAFT").await;

    let found = team
        .worker
        .ok("{ plans(status: [READY]) { nodes { id title spec project { name } feature { title } } } }", json!({}))
        .await;
    let nodes = found["plans"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["id"], plan.as_str());
    assert!(
        nodes[0]["spec"]
            .as_str()
            .expect("spec")
            .starts_with("# WebSocket")
    );
    assert_eq!(nodes[0]["project"]["name"], "Task Manager");

    let claimed = team.worker.ok(CLAIM, json!({ "planId": plan })).await;
    let claimed = &claimed["claimPlan"];
    assert_eq!(claimed["status"], "CLAIMED");
    assert_eq!(claimed["claimedBy"]["email"], "worker@example.com");
    assert!(claimed["claimedAt"].is_string());
    assert_eq!(claimed["lastActivityAt"], claimed["claimedAt"]);

    let mine = team
        .worker
        .ok(
            "query($me: ID) { plans(claimedBy: $me) { totalCount } }",
            json!({ "me": team.worker.user_id().await }),
        )
        .await;
    assert_eq!(mine["plans"]["totalCount"], 1);
}

async fn track_progress(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan("Profile CRUD", "READY").await;
    let claimed = team.worker.ok(CLAIM, json!({ "planId": plan })).await;
    let claimed_activity = claimed["claimPlan"]["lastActivityAt"]
        .as_str()
        .expect("ts")
        .to_owned();

    clock_moves_past(&claimed_activity).await;
    let first = team
        .worker
        .ok(
            UPDATE_PLAN,
            json!({ "planId": plan, "spec": "# Progress\nRoutes done." }),
        )
        .await;
    let first = &first["updatePlan"];
    assert_eq!(first["status"], "IN_PROGRESS");
    assert_eq!(first["spec"], "# Progress\nRoutes done.");
    let first_activity = first["lastActivityAt"].as_str().expect("ts").to_owned();
    assert!(first_activity > claimed_activity, "activity moves forward");
    assert_eq!(first["updatedAt"], first["lastActivityAt"]);

    clock_moves_past(&first_activity).await;
    let second = team
        .worker
        .ok(
            UPDATE_PLAN,
            json!({ "planId": plan, "spec": "# Progress\nAll tests pass." }),
        )
        .await;
    assert_eq!(second["updatePlan"]["status"], "IN_PROGRESS");
    assert!(second["updatePlan"]["lastActivityAt"].as_str().expect("ts") > first_activity.as_str());

    let events = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
    let kinds: Vec<&str> = events["plan"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["CREATED", "CLAIMED", "UPDATED", "UPDATED"]);
}

async fn submit_for_review_then_complete(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan_in("OAuth", "IN_PROGRESS").await;

    let submitted = team
        .worker
        .ok(SUBMIT, json!({ "planId": plan, "artifacts": "## PR\nhttps://example.com/pull/123", "status": "REVIEW" }))
        .await;
    let result = &submitted["submitWork"];
    assert_eq!(result["plan"]["status"], "REVIEW");
    assert_eq!(
        result["plan"]["claimedBy"],
        json!(null),
        "submission releases the claim"
    );
    assert_eq!(result["plan"]["submittedBy"]["email"], "worker@example.com");
    assert_eq!(
        result["plan"]["workArtifacts"],
        "## PR\nhttps://example.com/pull/123"
    );
    assert_eq!(
        result["featureVersion"],
        json!(null),
        "review cuts no version"
    );

    let completed = team
        .owner
        .ok(SET_STATUS, json!({ "planId": plan, "status": "COMPLETED" }))
        .await;
    assert_eq!(completed["setPlanStatus"]["status"], "COMPLETED");
    assert_eq!(completed["setPlanStatus"]["implementedVersion"], 2);
    assert_eq!(completed["setPlanStatus"]["claimedBy"], json!(null));

    let versions = team
        .viewer
        .ok(
            "query($featureId: ID!) { featureVersions(featureId: $featureId) {
               version createdAt implementedBy { email } implementedByPlan { id status } } }",
            json!({ "featureId": team.feature }),
        )
        .await;
    let versions = versions["featureVersions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["implementedByPlan"], json!(null));
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(versions[1]["implementedByPlan"]["id"], plan.as_str());
    assert_eq!(
        versions[1]["implementedBy"]["email"], "worker@example.com",
        "the worker, not the approver"
    );

    let feature = team
        .owner
        .ok(
            "query($id: ID!) { feature(id: $id) { currentVersion } }",
            json!({ "id": team.feature }),
        )
        .await;
    assert_eq!(feature["feature"]["currentVersion"], 2);
}

async fn submit_directly_as_completed(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan_in("Hotfix", "CLAIMED").await;
    let submitted = team
        .worker
        .ok(
            SUBMIT,
            json!({ "planId": plan, "artifacts": "Pushed to main", "status": "COMPLETED" }),
        )
        .await;
    let result = &submitted["submitWork"];
    assert_eq!(result["plan"]["status"], "COMPLETED");
    assert_eq!(result["plan"]["implementedVersion"], 2);
    assert_eq!(result["plan"]["claimedBy"], json!(null));
    assert_eq!(result["featureVersion"]["version"], 2);
    assert_eq!(
        result["featureVersion"]["implementedBy"]["email"],
        "worker@example.com"
    );
    assert_eq!(
        result["featureVersion"]["implementedByPlan"]["id"],
        plan.as_str()
    );

    let second = team.plan_in("Follow-up", "CLAIMED").await;
    let next = team
        .worker
        .ok(
            SUBMIT,
            json!({ "planId": second, "artifacts": "Pushed", "status": "COMPLETED" }),
        )
        .await;
    assert_eq!(
        next["submitWork"]["featureVersion"]["version"], 3,
        "versions count up per feature"
    );
}

async fn stalled_plan_goes_back_to_ready(backend: Backend) {
    let server =
        Server::start_with(backend, &["--stale-after", "2s", "--sweep-every", "500ms"]).await;
    let team = Team::new(&server).await;
    let plan = team.plan_in("Forgotten", "CLAIMED").await;
    let active = team.plan_in("Busy", "CLAIMED").await;

    let stalled = eventually(Duration::from_secs(20), || async {
        // Keep the other plan active so only the forgotten one goes stale.
        team.worker
            .ok(
                UPDATE_PLAN,
                json!({ "planId": active, "spec": "still going" }),
            )
            .await;
        let data = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
        (data["plan"]["status"] == "STALLED").then_some(data)
    })
    .await;
    let stalled = &stalled["plan"];
    assert_eq!(
        stalled["claimedBy"]["email"], "worker@example.com",
        "stalling keeps the claim"
    );
    let last_event = stalled["events"]
        .as_array()
        .expect("events")
        .last()
        .expect("event")
        .clone();
    assert_eq!(last_event["kind"], "STALLED");
    assert_eq!(last_event["fromStatus"], "CLAIMED");
    assert_eq!(last_event["actor"], json!(null), "the system stalled it");

    let busy = team.owner.ok(GET_PLAN, json!({ "id": active })).await;
    assert_eq!(
        busy["plan"]["status"], "IN_PROGRESS",
        "recent activity is never stalled"
    );

    let ready = team
        .owner
        .ok(SET_STATUS, json!({ "planId": plan, "status": "READY" }))
        .await;
    assert_eq!(ready["setPlanStatus"]["status"], "READY");
    assert_eq!(
        ready["setPlanStatus"]["claimedBy"],
        json!(null),
        "claim cleared"
    );
    let reclaimed = team.owner.ok(CLAIM, json!({ "planId": plan })).await;
    assert_eq!(
        reclaimed["claimPlan"]["claimedBy"]["email"],
        "owner@example.com"
    );
}

async fn release_a_plan(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan_in("Too big", "IN_PROGRESS").await;
    let released = team.worker.ok(RELEASE, json!({ "planId": plan })).await;
    assert_eq!(released["releasePlan"]["status"], "READY");
    assert_eq!(released["releasePlan"]["claimedBy"], json!(null));
    assert_eq!(released["releasePlan"]["claimedAt"], json!(null));

    // Someone else can now claim it, and an owner may release another's claim.
    team.owner
        .ok(
            ADD_MEMBER,
            json!({ "projectId": team.project, "email": "outsider@example.com" }),
        )
        .await;
    team.outsider.ok(CLAIM, json!({ "planId": plan })).await;
    assert_eq!(
        team.worker.code(RELEASE, json!({ "planId": plan })).await,
        "FORBIDDEN"
    );
    let by_owner = team.owner.ok(RELEASE, json!({ "planId": plan })).await;
    assert_eq!(by_owner["releasePlan"]["status"], "READY");
}

async fn failed_plan_keeps_its_artifacts(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan_in("Doomed", "REVIEW").await;
    let failed = team
        .owner
        .ok(SET_STATUS, json!({ "planId": plan, "status": "FAILED" }))
        .await;
    assert_eq!(failed["setPlanStatus"]["status"], "FAILED");
    assert_eq!(failed["setPlanStatus"]["workArtifacts"], "PR #1");
    assert_eq!(failed["setPlanStatus"]["claimedBy"], json!(null));

    let claimed = team.plan_in("Also doomed", "IN_PROGRESS").await;
    let failed = team
        .worker
        .ok(SET_STATUS, json!({ "planId": claimed, "status": "FAILED" }))
        .await;
    assert_eq!(
        failed["setPlanStatus"]["claimedBy"],
        json!(null),
        "failing releases the claim"
    );

    let reply = team
        .owner
        .send(SET_STATUS, json!({ "planId": plan, "status": "READY" }))
        .await;
    assert_eq!(reply.code(), "INVALID_TRANSITION");
    assert_eq!(
        reply.errors[0]["extensions"]["allowedStatuses"],
        json!([]),
        "FAILED is final"
    );
}

async fn review_sent_back_returns_the_claim_to_the_submitter(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan_in("Needs changes", "REVIEW").await;
    let reopened = team
        .owner
        .ok(
            SET_STATUS,
            json!({ "planId": plan, "status": "IN_PROGRESS" }),
        )
        .await;
    assert_eq!(reopened["setPlanStatus"]["status"], "IN_PROGRESS");
    assert_eq!(
        reopened["setPlanStatus"]["claimedBy"]["email"],
        "worker@example.com"
    );
    // The worker holds it again and can keep going.
    let updated = team
        .worker
        .ok(
            UPDATE_PLAN,
            json!({ "planId": plan, "spec": "fixed review notes" }),
        )
        .await;
    assert_eq!(updated["updatePlan"]["status"], "IN_PROGRESS");
}

async fn filter_plans_by_feature_and_status(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let other_feature = team
        .owner
        .create_feature(&team.project, "Notifications", "# N")
        .await;
    let mut auth_plans = Vec::new();
    for index in 0..5 {
        auth_plans.push(team.plan(&format!("Auth {index}"), "READY").await);
    }
    team.plan_of(&other_feature, "Notify", "READY").await;
    team.plan_of(&other_feature, "Notify draft", "DRAFT").await;
    team.worker
        .ok(CLAIM, json!({ "planId": auth_plans[0] }))
        .await;

    let query = "query($featureId: ID, $status: [PlanStatus!], $first: Int, $after: String) {
        plans(featureId: $featureId, status: $status, first: $first, after: $after) {
          totalCount nodes { id status feature { id } } pageInfo { hasNextPage endCursor } } }";
    let by_feature = team
        .viewer
        .ok(query, json!({ "featureId": team.feature }))
        .await;
    assert_eq!(by_feature["plans"]["totalCount"], 5);
    let by_status = team.viewer.ok(query, json!({ "status": ["READY"] })).await;
    assert_eq!(by_status["plans"]["totalCount"], 5, "4 auth + 1 notify");
    let both = team
        .viewer
        .ok(
            query,
            json!({ "featureId": other_feature, "status": ["READY", "DRAFT"] }),
        )
        .await;
    assert_eq!(both["plans"]["totalCount"], 2);

    // Paging visits every plan once, in creation order.
    let mut seen = Vec::new();
    let mut after = json!(null);
    loop {
        let page = team
            .viewer
            .ok(
                query,
                json!({ "featureId": team.feature, "first": 2, "after": after }),
            )
            .await;
        for node in page["plans"]["nodes"].as_array().expect("nodes") {
            seen.push(node["id"].as_str().expect("id").to_owned());
        }
        if page["plans"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["plans"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, auth_plans);

    let on_feature = team
        .viewer
        .ok(
            "query($id: ID!) { feature(id: $id) { plans(status: [CLAIMED]) { totalCount nodes { id } } } }",
            json!({ "id": team.feature }),
        )
        .await;
    assert_eq!(on_feature["feature"]["plans"]["totalCount"], 1);
    assert_eq!(
        on_feature["feature"]["plans"]["nodes"][0]["id"],
        auth_plans[0].as_str()
    );
}

async fn update_a_feature_in_place_or_as_a_new_version(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let update = "mutation($id: ID!, $spec: String, $title: String, $newVersion: Boolean) {
        updateFeature(featureId: $id, specContent: $spec, title: $title, newVersion: $newVersion) {
          title currentVersion spec versions { version spec } } }";
    let amended = team
        .worker
        .ok(
            update,
            json!({ "id": team.feature, "spec": "# Auth v1, amended", "title": "Auth" }),
        )
        .await;
    let amended = &amended["updateFeature"];
    assert_eq!(amended["title"], "Auth");
    assert_eq!(amended["currentVersion"], 1);
    assert_eq!(
        amended["versions"],
        json!([{ "version": 1, "spec": "# Auth v1, amended" }])
    );

    let next = team
        .worker
        .ok(
            update,
            json!({ "id": team.feature, "spec": "# Auth v2", "newVersion": true }),
        )
        .await;
    let next = &next["updateFeature"];
    assert_eq!(next["currentVersion"], 2);
    assert_eq!(next["spec"], "# Auth v2");
    assert_eq!(
        next["versions"],
        json!([{ "version": 1, "spec": "# Auth v1, amended" }, { "version": 2, "spec": "# Auth v2" }])
    );
}
