//! Everything the server must refuse, with the right code and nothing changed.

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    every_invalid_status_change_is_refused_with_the_allowed_list,
    claims_of_unavailable_plans_conflict,
    concurrent_claims_have_exactly_one_winner,
    non_members_are_forbidden_and_see_nothing,
    viewers_cannot_write,
    only_the_claimer_updates_and_submits,
    missing_and_revoked_keys_are_unauthenticated,
    bad_input_is_refused_and_nothing_is_written,
    project_membership_rules,
);

/// Every status a plan can be driven to, and every `setPlanStatus` target the
/// workflow table does not allow from it.
async fn every_invalid_status_change_is_refused_with_the_allowed_list(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let all = [
        "DRAFT",
        "READY",
        "CLAIMED",
        "IN_PROGRESS",
        "STALLED",
        "REVIEW",
        "COMPLETED",
        "FAILED",
    ];
    let allowed_by_set_status: &[(&str, &[&str])] = &[
        ("DRAFT", &["READY"]),
        ("READY", &["DRAFT"]),
        ("CLAIMED", &["FAILED"]),
        ("IN_PROGRESS", &["FAILED"]),
        ("REVIEW", &["IN_PROGRESS", "COMPLETED", "FAILED"]),
        ("COMPLETED", &[]),
        ("FAILED", &[]),
    ];
    let allowed_next: &[(&str, &[&str])] = &[
        ("DRAFT", &["READY"]),
        ("READY", &["DRAFT", "CLAIMED"]),
        (
            "CLAIMED",
            &["READY", "IN_PROGRESS", "REVIEW", "COMPLETED", "FAILED"],
        ),
        ("IN_PROGRESS", &["READY", "REVIEW", "COMPLETED", "FAILED"]),
        ("REVIEW", &["IN_PROGRESS", "COMPLETED", "FAILED"]),
        ("COMPLETED", &[]),
        ("FAILED", &[]),
    ];
    for (from, allowed) in allowed_by_set_status {
        let plan = team.plan_in(&format!("from {from}"), from).await;
        let expected_allowed = allowed_next
            .iter()
            .find(|(status, _)| status == from)
            .expect("row")
            .1;
        for target in all.iter().filter(|target| !allowed.contains(target)) {
            let reply = team
                .owner
                .send(SET_STATUS, json!({ "planId": plan, "status": target }))
                .await;
            assert_eq!(reply.code(), "INVALID_TRANSITION", "{from} -> {target}");
            let extensions = &reply.errors[0]["extensions"];
            assert_eq!(extensions["currentStatus"], *from);
            assert_eq!(
                extensions["allowedStatuses"],
                json!(expected_allowed),
                "{from} -> {target}"
            );
            assert!(
                reply.message().contains(from),
                "message names the current status: {}",
                reply.message()
            );
        }
        let after = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
        assert_eq!(after["plan"]["status"], *from, "refusals change nothing");
    }

    // Work on a plan that is not claimed is refused as well.
    let draft = team.plan_in("draft", "DRAFT").await;
    for (query, vars) in [
        (RELEASE, json!({ "planId": draft })),
        (
            SUBMIT,
            json!({ "planId": draft, "artifacts": "x", "status": "REVIEW" }),
        ),
    ] {
        assert_eq!(team.owner.code(query, vars).await, "INVALID_TRANSITION");
    }
    let review = team.plan_in("in review", "REVIEW").await;
    let reply = team
        .worker
        .send(
            UPDATE_PLAN,
            json!({ "planId": review, "spec": "late edit" }),
        )
        .await;
    assert_eq!(reply.code(), "INVALID_TRANSITION");
}

async fn claims_of_unavailable_plans_conflict(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    for status in ["DRAFT", "IN_PROGRESS", "REVIEW", "COMPLETED", "FAILED"] {
        let plan = team
            .plan_in(&format!("not claimable {status}"), status)
            .await;
        assert_eq!(
            team.owner.code(CLAIM, json!({ "planId": plan })).await,
            "CONFLICT",
            "{status}"
        );
    }
    let plan = team.plan("contested", "READY").await;
    team.worker.ok(CLAIM, json!({ "planId": plan })).await;
    let reply = team.owner.send(CLAIM, json!({ "planId": plan })).await;
    assert_eq!(reply.code(), "CONFLICT");
    assert!(
        reply.message().contains("already claimed"),
        "{}",
        reply.message()
    );
    let after = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(
        after["plan"]["claimedBy"]["email"], "worker@example.com",
        "the first claim stands"
    );
}

async fn concurrent_claims_have_exactly_one_winner(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let mut claimers = vec![team.owner.clone(), team.worker.clone()];
    for index in 0..3 {
        let email = format!("agent{index}@example.com");
        claimers.push(team.new_member(&server, &email).await);
    }
    let plan = team.plan("hot plan", "READY").await;
    let attempts = (0..25).map(|index| {
        let client = claimers[index % claimers.len()].clone();
        let plan = plan.clone();
        tokio::spawn(async move { client.send(CLAIM, json!({ "planId": plan })).await })
    });
    let replies: Vec<Reply> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect();
    let winners: Vec<&Reply> = replies
        .iter()
        .filter(|reply| reply.errors.is_empty())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    for loser in replies.iter().filter(|reply| !reply.errors.is_empty()) {
        assert_eq!(loser.code(), "CONFLICT");
    }
    let winner = winners[0].data["claimPlan"]["claimedBy"]["email"].clone();
    let after = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(after["plan"]["claimedBy"]["email"], winner);
    let claimed_events = after["plan"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["kind"] == "CLAIMED")
        .count();
    assert_eq!(claimed_events, 1);
}

async fn non_members_are_forbidden_and_see_nothing(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan("secret plan", "READY").await;
    let outsider = &team.outsider;

    let writes: Vec<(&str, Value)> = vec![
        (
            CREATE_FEATURE,
            json!({ "projectId": team.project, "title": "x", "spec": "y" }),
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "x", "spec": "y" }),
        ),
        (CLAIM, json!({ "planId": plan })),
        (UPDATE_PLAN, json!({ "planId": plan, "spec": "y" })),
        (SET_STATUS, json!({ "planId": plan, "status": "DRAFT" })),
        (
            ADD_MEMBER,
            json!({ "projectId": team.project, "email": "outsider@example.com" }),
        ),
    ];
    for (query, vars) in writes {
        let reply = outsider.send(query, vars).await;
        assert_eq!(reply.code(), "FORBIDDEN", "{query}");
        assert_eq!(reply.message(), "You are not a member of this project");
    }
    for (query, vars) in [
        (GET_PLAN, json!({ "id": plan })),
        (
            "query($id: ID!) { project(id: $id) { name } }",
            json!({ "id": team.project }),
        ),
        (
            "query($id: ID!) { feature(id: $id) { title } }",
            json!({ "id": team.feature }),
        ),
    ] {
        assert_eq!(outsider.code(query, vars).await, "FORBIDDEN");
    }

    let lists = outsider
        .ok(
            "query($projectId: ID) { projects { id } plans { totalCount } scoped: plans(projectId: $projectId) { totalCount } }",
            json!({ "projectId": team.project }),
        )
        .await;
    assert_eq!(lists["projects"], json!([]));
    assert_eq!(lists["plans"]["totalCount"], 0);
    assert_eq!(lists["scoped"]["totalCount"], 0);

    let after = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(after["plan"]["status"], "READY");
    assert_eq!(after["plan"]["events"].as_array().expect("events").len(), 1);
}

async fn viewers_cannot_write(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan("viewed", "READY").await;
    let viewer = &team.viewer;
    for (query, vars) in [
        (
            CREATE_FEATURE,
            json!({ "projectId": team.project, "title": "x", "spec": "y" }),
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "x", "spec": "y" }),
        ),
        (CLAIM, json!({ "planId": plan })),
        (SET_STATUS, json!({ "planId": plan, "status": "DRAFT" })),
        (UPDATE_PLAN, json!({ "planId": plan, "spec": "y" })),
    ] {
        assert_eq!(viewer.code(query, vars).await, "FORBIDDEN", "{query}");
    }
    let read = viewer.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(read["plan"]["status"], "READY", "viewers read");
    // Told they cannot, not that someone else was faster.
    let claimed = team.plan_in("taken", "CLAIMED").await;
    let reply = viewer.send(CLAIM, json!({ "planId": claimed })).await;
    assert_eq!(reply.code(), "FORBIDDEN", "{reply:?}");
    assert!(reply.message().contains("Viewers"), "{}", reply.message());
}

async fn only_the_claimer_updates_and_submits(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan_in("mine", "IN_PROGRESS").await;
    let reply = team
        .owner
        .send(UPDATE_PLAN, json!({ "planId": plan, "spec": "hijack" }))
        .await;
    assert_eq!(reply.code(), "FORBIDDEN");
    assert!(reply.message().contains("claimed"), "{}", reply.message());
    let submit = json!({ "planId": plan, "artifacts": "x", "status": "COMPLETED" });
    assert_eq!(team.owner.code(SUBMIT, submit).await, "FORBIDDEN");
    let after = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(
        after["plan"]["spec"], "progress",
        "the claimer's spec is untouched"
    );
    assert_eq!(after["plan"]["status"], "IN_PROGRESS");
}

async fn missing_and_revoked_keys_are_unauthenticated(backend: Backend) {
    let server = Server::start(backend).await;
    let anonymous = server.anonymous();
    for query in [
        "{ viewer { email } }",
        "{ projects { id } }",
        "mutation { createProject(name: \"x\") { id } }",
    ] {
        assert_eq!(anonymous.code(query, json!({})).await, "UNAUTHENTICATED");
    }
    let made_up = server.client("pg_00000000_0000000000000000000000000000000000000000");
    let reply = made_up.send("{ viewer { email } }", json!({})).await;
    assert_eq!(reply.code(), "UNAUTHENTICATED");
    assert_eq!(reply.status, 401);

    let user = server.user("revokee@example.com").await;
    let created = user
        .ok(
            "mutation { createApiKey(label: \"laptop\") { secret apiKey { id label prefix } } }",
            json!({}),
        )
        .await;
    let second = server.client(created["createApiKey"]["secret"].as_str().expect("secret"));
    let me = second
        .ok(
            "{ viewer { email } apiKeys { label lastUsedAt revokedAt } }",
            json!({}),
        )
        .await;
    assert_eq!(me["viewer"]["email"], "revokee@example.com");
    assert_eq!(me["apiKeys"].as_array().expect("keys").len(), 2);

    let key_id = created["createApiKey"]["apiKey"]["id"].clone();
    let revoked = user
        .ok(
            "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": key_id }),
        )
        .await;
    assert!(revoked["revokeApiKey"]["revokedAt"].is_string());
    assert_eq!(
        second.code("{ viewer { email } }", json!({})).await,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        user.ok("{ viewer { email } }", json!({})).await["viewer"]["email"],
        "revokee@example.com"
    );

    // Someone else's key is not found, and only admins create users.
    let other = server.user("other@example.com").await;
    let foreign = other
        .code(
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": key_id }),
        )
        .await;
    assert_eq!(foreign, "NOT_FOUND");
    let create_user = "mutation { createUser(email: \"x@example.com\") { secret } }";
    assert_eq!(other.code(create_user, json!({})).await, "FORBIDDEN");
}

async fn bad_input_is_refused_and_nothing_is_written(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let long_title = "x".repeat(256);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": long_title, "spec": "y" }),
            "BAD_USER_INPUT",
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "  ", "spec": "y" }),
            "BAD_USER_INPUT",
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "t", "spec": "" }),
            "BAD_USER_INPUT",
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "t", "spec": "y", "status": "CLAIMED" }),
            "BAD_USER_INPUT",
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": "not-a-uuid", "title": "t", "spec": "y" }),
            "BAD_USER_INPUT",
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": uuid::Uuid::now_v7().to_string(), "title": "t", "spec": "y" }),
            "NOT_FOUND",
        ),
        (
            CREATE_FEATURE,
            json!({ "projectId": team.project, "title": long_title, "spec": "y" }),
            "BAD_USER_INPUT",
        ),
        (
            CLAIM,
            json!({ "planId": uuid::Uuid::now_v7().to_string() }),
            "NOT_FOUND",
        ),
        (GET_PLAN, json!({ "id": "42" }), "BAD_USER_INPUT"),
        (
            "{ plans(first: 101) { totalCount } }",
            json!({}),
            "BAD_USER_INPUT",
        ),
        (
            "{ plans(after: \"garbage\") { totalCount } }",
            json!({}),
            "BAD_USER_INPUT",
        ),
    ];
    for (query, vars, code) in cases {
        let reply = team.owner.send(query, vars.clone()).await;
        assert_eq!(reply.code(), code, "{query} {vars}");
        assert!(!reply.message().is_empty());
    }
    let long = team
        .owner
        .send(
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": long_title, "spec": "y" }),
        )
        .await;
    assert!(
        long.message().contains("255"),
        "the limit is named: {}",
        long.message()
    );

    let long_description = "d".repeat(10_001);
    let reply = team
        .owner
        .send(
            "mutation($f: ID!, $d: String) { createPlan(featureId: $f, title: \"t\", description: $d, specContent: \"s\") { id } }",
            json!({ "f": team.feature, "d": long_description }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert!(reply.message().contains("10000"), "{}", reply.message());

    let too_big = "x".repeat(1024 * 1024 + 1);
    let reply = team
        .owner
        .send(
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "big", "spec": too_big }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert!(reply.message().contains("1048576"), "{}", reply.message());

    let counts = team.owner.ok("{ plans { totalCount } }", json!({})).await;
    assert_eq!(
        counts["plans"]["totalCount"], 0,
        "no refused request wrote a plan"
    );
}

async fn project_membership_rules(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let members = "query($id: ID!) { project(id: $id) { members { user { id email } role } } }";
    let vars = json!({ "id": team.project });
    let listed = team.viewer.ok(members, vars.clone()).await;
    let roles: Vec<(String, String)> = listed["project"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| {
            (
                member["user"]["email"].as_str().expect("email").to_owned(),
                member["role"].as_str().expect("role").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("owner@example.com".to_owned(), "OWNER".to_owned()),
            ("worker@example.com".to_owned(), "MEMBER".to_owned()),
            ("viewer@example.com".to_owned(), "VIEWER".to_owned()),
        ]
    );
    let owner_id = listed["project"]["members"][0]["user"]["id"].clone();
    let last_owner = json!({ "projectId": team.project, "userId": owner_id });
    assert_eq!(
        team.owner.code(REMOVE_MEMBER, last_owner).await,
        "CONFLICT",
        "the last owner stays"
    );
    let add_unknown = json!({ "projectId": team.project, "email": "nobody@example.com" });
    assert_eq!(team.owner.code(ADD_MEMBER, add_unknown).await, "NOT_FOUND");
    let by_member = json!({ "projectId": team.project, "email": "outsider@example.com" });
    assert_eq!(team.worker.code(ADD_MEMBER, by_member).await, "FORBIDDEN");

    let viewer_id = listed["project"]["members"][2]["user"]["id"].clone();
    let removed = team
        .owner
        .ok(
            REMOVE_MEMBER,
            json!({ "projectId": team.project, "userId": viewer_id }),
        )
        .await;
    assert_eq!(removed["removeProjectMember"], true);
    assert_eq!(
        team.viewer.code(members, vars).await,
        "FORBIDDEN",
        "removed members lose access at once"
    );
}
