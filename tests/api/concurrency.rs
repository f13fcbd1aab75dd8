//! The workflow under races: many agents at once, and on PostgreSQL two server
//! instances sharing one database.

use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    a_hundred_concurrent_claims_have_one_winner,
    simultaneous_completions_get_consecutive_versions,
    the_sweeper_never_stalls_fresh_work_and_stalls_once,
);

/// Adds `count` agents to the team's project, each with a client on every instance.
async fn agents(servers: &[Server], team: &Team, count: usize) -> Vec<Vec<Client>> {
    let mut agents = Vec::new();
    for index in 0..count {
        let email = format!("agent{index}@example.com");
        let agent = team.new_member(&servers[0], &email).await;
        agents.push(
            servers
                .iter()
                .map(|server| server.as_client(&agent))
                .collect(),
        );
    }
    agents
}

async fn all(tasks: Vec<tokio::task::JoinHandle<Reply>>) -> Vec<Reply> {
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect()
}

async fn a_hundred_concurrent_claims_have_one_winner(backend: Backend) {
    let servers = Server::instances(backend, &[]).await;
    let team = Team::new(&servers[0]).await;
    let agents = agents(&servers, &team, 10).await;
    let plan = team.plan("contested", "READY").await;

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(100));
    let tasks = (0..100)
        .map(|index| {
            // Spread the claims over agents and over instances.
            let client = agents[index % agents.len()][index % servers.len()].clone();
            let plan = plan.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                client.send(CLAIM, json!({ "planId": plan })).await
            })
        })
        .collect();
    let replies = all(tasks).await;
    let winners: Vec<&Reply> = replies
        .iter()
        .filter(|reply| reply.errors.is_empty())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    let losers: Vec<&str> = replies
        .iter()
        .filter(|reply| !reply.errors.is_empty())
        .map(Reply::code)
        .collect();
    assert_eq!(losers.len(), 99);
    assert!(
        losers.iter().all(|code| *code == "CONFLICT"),
        "losers get CONFLICT: {losers:?}"
    );

    let winner = &winners[0].data["claimPlan"]["claimedBy"]["email"];
    let stored = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(
        &stored["plan"]["claimedBy"]["email"], winner,
        "the winner is the claimer"
    );
    let claims = stored["plan"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["kind"] == "CLAIMED")
        .count();
    assert_eq!(claims, 1, "one CLAIMED event");
}

async fn simultaneous_completions_get_consecutive_versions(backend: Backend) {
    let servers = Server::instances(backend, &[]).await;
    let team = Team::new(&servers[0]).await;
    let agents = agents(&servers, &team, 10).await;

    // Ten plans claimed by ten agents (to be submitted as COMPLETED) and ten in
    // REVIEW (to be approved): twenty completions of one feature at once.
    let mut completions: Vec<(String, Client, Value)> = Vec::new();
    for (index, agent) in agents.iter().enumerate() {
        let direct = team.plan(&format!("direct {index}"), "READY").await;
        agent[0].ok(CLAIM, json!({ "planId": direct })).await;
        let instance = &agent[index % servers.len()];
        completions.push((
            SUBMIT.to_owned(),
            instance.clone(),
            json!({ "planId": direct, "artifacts": "pushed", "status": "COMPLETED" }),
        ));
        let reviewed = team.plan(&format!("reviewed {index}"), "READY").await;
        agent[0].ok(CLAIM, json!({ "planId": reviewed })).await;
        agent[0]
            .ok(
                SUBMIT,
                json!({ "planId": reviewed, "artifacts": "PR", "status": "REVIEW" }),
            )
            .await;
        let approver = servers[(index + 1) % servers.len()].as_client(&team.owner);
        completions.push((
            SET_STATUS.to_owned(),
            approver,
            json!({ "planId": reviewed, "status": "COMPLETED" }),
        ));
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(completions.len()));
    let tasks = completions
        .into_iter()
        .map(|(query, client, vars)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                client.send(&query, vars).await
            })
        })
        .collect();
    for reply in all(tasks).await {
        assert!(
            reply.errors.is_empty(),
            "completion failed: {:?}",
            reply.errors
        );
    }

    let versions = team
        .owner
        .ok(
            "query($id: ID!) { feature(id: $id) { currentVersion versions(last: 100) { version implementedByPlan { id implementedVersion } } } }",
            json!({ "id": team.feature }),
        )
        .await;
    let feature = &versions["feature"];
    let numbers: Vec<i64> = feature["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_i64().expect("n"))
        .collect();
    assert_eq!(
        numbers,
        (1..=21).collect::<Vec<i64>>(),
        "v1 plus twenty, no gap, no duplicate"
    );
    assert_eq!(feature["currentVersion"], 21);
    let mut plans_seen = HashMap::new();
    for version in feature["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .skip(1)
    {
        let plan = &version["implementedByPlan"];
        assert_eq!(
            plan["implementedVersion"], version["version"],
            "each version links its own plan"
        );
        assert!(
            plans_seen.insert(plan["id"].to_string(), ()).is_none(),
            "one version per plan"
        );
    }
    assert_eq!(plans_seen.len(), 20);
}

async fn the_sweeper_never_stalls_fresh_work_and_stalls_once(backend: Backend) {
    let servers =
        Server::instances(backend, &["--stale-after", "2s", "--sweep-every", "100ms"]).await;
    let team = Team::new(&servers[0]).await;
    // The busy plans are claimed first: by the time the idle ones are stale,
    // the busy ones would be too, had their activity not counted.
    let mut busy = Vec::new();
    for index in 0..4 {
        busy.push(team.plan_in(&format!("busy {index}"), "CLAIMED").await);
    }
    let mut idle = Vec::new();
    for index in 0..4 {
        idle.push(team.plan_in(&format!("idle {index}"), "CLAIMED").await);
    }
    // Keep the busy plans active, alternating instances, while both sweep:
    // until every idle plan is stalled, then until each instance has started
    // another sweep, so the one it was in then has finished (a second stall
    // of one plan would have been recorded by now).
    let mut round = 0;
    eventually(Duration::from_secs(30), async || {
        keep_active(&servers, &team, &busy, &mut round).await;
        (stalled_count(&team, &idle).await == idle.len()).then_some(())
    })
    .await;
    let sweeps_when_stalled = sweeper_runs(&servers).await;
    eventually(Duration::from_secs(30), async || {
        keep_active(&servers, &team, &busy, &mut round).await;
        let sweeps = sweeper_runs(&servers).await;
        let mut swept_again = sweeps.iter().zip(&sweeps_when_stalled);
        swept_again.all(|(now, then)| now > then).then_some(())
    })
    .await;

    for plan in &busy {
        let data = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
        assert_eq!(data["plan"]["status"], "IN_PROGRESS");
        // Fresh activity is never stalled: a STALLED event of a busy plan
        // (only possible when this machine was too loaded to keep it active
        // for two seconds) must come at least the threshold after the
        // activity before it.
        let events = data["plan"]["events"].as_array().expect("events");
        for (index, event) in events.iter().enumerate() {
            if event["kind"] != "STALLED" {
                continue;
            }
            let activity = events[..index]
                .iter()
                .rev()
                .find(|earlier| earlier["kind"] == "UPDATED" || earlier["kind"] == "CLAIMED")
                .expect("a claim before any stall");
            let idle_for = timestamp(&event["at"]) - timestamp(&activity["at"]);
            assert!(
                idle_for >= chrono::Duration::seconds(2),
                "a busy plan was stalled {idle_for} after its activity: {events:?}"
            );
        }
    }
    for plan in &idle {
        let data = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
        assert_eq!(data["plan"]["status"], "STALLED");
        let events = data["plan"]["events"].as_array().expect("events");
        let stalls: Vec<&Value> = events.iter().filter(|e| e["kind"] == "STALLED").collect();
        assert_eq!(
            stalls.len(),
            1,
            "one STALLED event per plan, however many sweepers"
        );
        let idle_for = timestamp(&stalls[0]["at"]) - timestamp(&data["plan"]["lastActivityAt"]);
        assert!(
            idle_for >= chrono::Duration::seconds(2),
            "stalled only after the threshold: {idle_for}"
        );
    }
}

/// One round of work on `plans` by the worker, on the next instance in turn.
async fn keep_active(servers: &[Server], team: &Team, plans: &[String], round: &mut usize) {
    let worker = servers[*round % servers.len()].as_client(&team.worker);
    for plan in plans {
        let spec = format!("round {round}");
        worker
            .ok(UPDATE_PLAN, json!({ "planId": plan, "spec": spec }))
            .await;
    }
    *round += 1;
}

/// How many of `plans` are STALLED now.
async fn stalled_count(team: &Team, plans: &[String]) -> usize {
    let mut stalled = 0;
    for plan in plans {
        let data = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
        if data["plan"]["status"] == "STALLED" {
            stalled += 1;
        }
    }
    stalled
}

/// Sweeps run so far, per instance.
async fn sweeper_runs(servers: &[Server]) -> Vec<f64> {
    let mut runs = Vec::new();
    for server in servers {
        runs.push(server.metrics().await.get("plangraph_sweeper_runs_total"));
    }
    runs
}

fn timestamp(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("timestamp"))
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc)
}
