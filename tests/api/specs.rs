//! Specs in every kind of store — the fs store, Google Cloud Storage and S3,
//! the last two against real emulators (fake-gcs-server, moto) — with one
//! scenario per behaviour run on each: the use cases end to end, laziness,
//! batching and caching proven by the store counters on `/metrics`, content
//! addressing, a real outage (the emulator process killed and started again,
//! the fs directory swapped for a file) with recovery, and `check-store`.

use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

const GET_CALLS: &str = "plangraph_spec_store_calls_total{operation=\"get\"}";
const PUT_CALLS: &str = "plangraph_spec_store_calls_total{operation=\"put\"}";
const BATCHES: &str = "plangraph_spec_store_batches_total";
const BATCH_KEYS: &str = "plangraph_spec_store_batch_keys_total";
const MOST_IN_FLIGHT: &str = "plangraph_spec_store_gets_in_flight_max";
const HITS: &str = "plangraph_spec_cache_hits_total";
const MISSES: &str = "plangraph_spec_cache_misses_total";
const ALREADY_PRESENT: &str = "plangraph_spec_store_puts_already_present_total";

const PLANS_WITH_SPEC: &str = "query($projectId: ID!) {
    plans(projectId: $projectId, first: 100) { totalCount nodes { id title status spec } } }";

fn spec_of(title: &str) -> String {
    format!("# {title}\n\n## Steps\n1. Build it")
}

/// Plan id → spec, from a `PLANS_WITH_SPEC` reply.
fn specs_by_plan(data: &Value) -> HashMap<String, Value> {
    data["plans"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| {
            (
                node["id"].as_str().expect("id").to_owned(),
                node["spec"].clone(),
            )
        })
        .collect()
}

async fn plans(team: &Team, count: usize) -> Vec<(String, String)> {
    let mut plans = Vec::new();
    for index in 0..count {
        let title = format!("plan {index}");
        plans.push((team.plan(&title, "READY").await, spec_of(&title)));
    }
    plans
}

on_every_store!(
    specs_round_trip_through_the_store_and_survive_a_restart,
    a_query_without_spec_makes_no_store_call,
    a_page_of_fifty_specs_is_one_batch_of_concurrent_reads,
    a_repeated_query_is_served_from_the_cache,
    an_identical_spec_is_not_uploaded_again,
    a_store_outage_fails_only_spec_fields_and_recovers_by_itself,
    check_store_gives_a_verdict_for_a_good_and_a_dead_store,
);

async fn specs_round_trip_through_the_store_and_survive_a_restart(kind: StoreKind) {
    let Some(store) = SpecBucket::new(kind).await else {
        return;
    };
    let server = Server::start_on_store(&store, &[]).await;
    let team = Team::new(&server).await;
    let plan = team.plan("OAuth", "DRAFT").await;

    let read = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(read["plan"]["spec"], spec_of("OAuth"));
    let updated = team
        .owner
        .ok(
            UPDATE_PLAN,
            json!({ "planId": plan, "spec": "# OAuth\nv2" }),
        )
        .await;
    assert_eq!(updated["updatePlan"]["spec"], "# OAuth\nv2");

    let names = store.names().await;
    let plan_prefix = format!("{SPECS_PREFIX}projects/{}/plans/{plan}/", team.project);
    assert_eq!(
        names
            .iter()
            .filter(|name| name.starts_with(&plan_prefix))
            .count(),
        2,
        "both versions of the plan spec are objects under the prefix: {names:?}"
    );
    let feature_object = names
        .iter()
        .find(|name| name.contains("/features/"))
        .expect("the feature spec is an object too");
    assert_eq!(store.read(feature_object).await, "# Auth\nUsers sign in.");

    let server = server.restart().await;
    let owner = server.as_client(&team.owner);
    let after = owner
        .ok(
            "query($id: ID!, $feature: ID!) { plan(id: $id) { spec }
               feature(id: $feature) { spec versions { version spec } } }",
            json!({ "id": plan, "feature": team.feature }),
        )
        .await;
    assert_eq!(after["plan"]["spec"], "# OAuth\nv2");
    assert_eq!(after["feature"]["spec"], "# Auth\nUsers sign in.");
    assert_eq!(
        after["feature"]["versions"][0]["spec"],
        "# Auth\nUsers sign in."
    );
    assert_eq!(
        server.metrics().await.get(GET_CALLS),
        2.0,
        "after the restart the plan and feature specs came from the store (one key shared by feature and version)"
    );
}

async fn a_query_without_spec_makes_no_store_call(kind: StoreKind) {
    let Some(store) = SpecBucket::new(kind).await else {
        return;
    };
    let server = Server::start_on_store(&store, &[]).await;
    let team = Team::new(&server).await;
    let created = plans(&team, 5).await;
    let before = server.metrics().await;

    let listed = team
        .owner
        .ok(
            "query($projectId: ID!) { plans(projectId: $projectId) { totalCount
               nodes { id title status specSha256 specSize feature { title currentVersion } } } }",
            json!({ "projectId": team.project }),
        )
        .await;
    assert_eq!(listed["plans"]["totalCount"], 5);
    team.owner
        .ok(
            "query($id: ID!) { plan(id: $id) { title events { kind } } }",
            json!({ "id": created[0].0 }),
        )
        .await;

    let after = server.metrics().await;
    for counter in [GET_CALLS, BATCHES, HITS, MISSES] {
        assert_eq!(
            after.get(counter),
            before.get(counter),
            "{counter} moved for a query without spec"
        );
    }
    assert_eq!(after.get(GET_CALLS), 0.0);
}

async fn a_page_of_fifty_specs_is_one_batch_of_concurrent_reads(kind: StoreKind) {
    let Some(store) = SpecBucket::new(kind).await else {
        return;
    };
    // No cache, so that every run of the page reads all 50 specs from the store.
    let args = ["--spec-fetch-concurrency", "8", "--spec-cache-bytes", "0"];
    let server = Server::start_on_store(&store, &args).await;
    let team = Team::new(&server).await;
    let created = plans(&team, 50).await;
    let query = json!({ "projectId": team.project });
    let page_without_spec =
        "query($projectId: ID!) { plans(projectId: $projectId, first: 100) { nodes { id } } }";
    let page_with_spec =
        "query($projectId: ID!) { plans(projectId: $projectId, first: 100) { nodes { id spec } } }";
    team.owner.ok(page_without_spec, query.clone()).await;

    // The DataLoader gathers the keys its resolvers ask for during 1 ms of
    // wall-clock time; a server process descheduled in the middle of
    // resolving the page (a loaded 2-core machine) splits it in two. So the
    // page is read up to three times, and one of them must be a single batch.
    let mut batches_per_run = Vec::new();
    for _ in 0..3 {
        let before = server.metrics().await;
        let page = team.owner.ok(page_with_spec, query.clone()).await;
        let after = server.metrics().await;

        let specs = specs_by_plan(&page);
        assert_eq!(specs.len(), 50);
        for (plan, spec) in &created {
            assert_eq!(specs[plan], json!(spec), "spec of plan {plan}");
        }
        let delta = |counter| after.get(counter) - before.get(counter);
        assert_eq!(delta(BATCH_KEYS), 50.0, "the batches held all 50 keys");
        assert_eq!(delta(GET_CALLS), 50.0, "one object read per spec");
        batches_per_run.push(delta(BATCHES));
        if delta(BATCHES) == 1.0 {
            break;
        }
    }
    assert_eq!(
        batches_per_run.last(),
        Some(&1.0),
        "one batch for the whole page; batches per run: {batches_per_run:?}"
    );
    // A local file read can end before the next one starts, so only reads
    // over the network are sure to overlap.
    let least_in_flight = if matches!(kind, StoreKind::Fs) {
        1.0
    } else {
        2.0
    };
    let most_in_flight = server.metrics().await.get(MOST_IN_FLIGHT);
    assert!(
        (least_in_flight..=8.0).contains(&most_in_flight),
        "reads overlapped, within --spec-fetch-concurrency 8: at most {most_in_flight} at once"
    );
}

async fn a_repeated_query_is_served_from_the_cache(kind: StoreKind) {
    let Some(store) = SpecBucket::new(kind).await else {
        return;
    };
    let server = Server::start_on_store(&store, &[]).await;
    let team = Team::new(&server).await;
    plans(&team, 10).await;
    let query = json!({ "projectId": team.project });

    let first = team.owner.ok(PLANS_WITH_SPEC, query.clone()).await;
    let between = server.metrics().await;
    let second = team.owner.ok(PLANS_WITH_SPEC, query).await;
    let after = server.metrics().await;

    assert_eq!(first, second);
    assert_eq!(
        between.get(GET_CALLS),
        10.0,
        "the first query read each spec once"
    );
    assert_eq!(
        after.get(GET_CALLS),
        10.0,
        "the second one read nothing from the store"
    );
    assert_eq!(after.get(HITS) - between.get(HITS), 10.0);
    assert_eq!(after.get(MISSES), between.get(MISSES));
}

async fn an_identical_spec_is_not_uploaded_again(kind: StoreKind) {
    let Some(store) = SpecBucket::new(kind).await else {
        return;
    };
    let server = Server::start_on_store(&store, &[]).await;
    let team = Team::new(&server).await;
    let plan = team.plan("Same", "DRAFT").await;
    let objects_before = store.objects().await;
    let before = server.metrics().await;

    let updated = team
        .owner
        .ok(
            UPDATE_PLAN,
            json!({ "planId": plan, "spec": spec_of("Same") }),
        )
        .await;

    assert_eq!(updated["updatePlan"]["spec"], spec_of("Same"));
    let after = server.metrics().await;
    assert_eq!(after.get(PUT_CALLS) - before.get(PUT_CALLS), 1.0);
    assert_eq!(
        after.get(ALREADY_PRESENT) - before.get(ALREADY_PRESENT),
        1.0,
        "the store found the object already there"
    );
    assert_eq!(
        store.objects().await,
        objects_before,
        "no new object and no new generation of the existing one"
    );
}

async fn a_store_outage_fails_only_spec_fields_and_recovers_by_itself(kind: StoreKind) {
    let Some(mut store) = OutageStore::start(kind).await else {
        return;
    };
    // No cache: every spec read below must really reach the store.
    let server = Server::start_on_store(&store.bucket, &["--spec-cache-bytes", "0"]).await;
    let team = Team::new(&server).await;
    let created = plans(&team, 3).await;
    assert_eq!(server.readyz().await.0, 200);

    store.stop().await;

    let reply = team
        .owner
        .send(PLANS_WITH_SPEC, json!({ "projectId": team.project }))
        .await;
    let nodes = reply.data["plans"]["nodes"]
        .as_array()
        .expect("plans still arrive");
    assert_eq!(nodes.len(), 3);
    for (index, node) in nodes.iter().enumerate() {
        assert!(
            node["title"]
                .as_str()
                .is_some_and(|title| title.starts_with("plan "))
        );
        assert_eq!(node["status"], "READY");
        assert_eq!(node["spec"], Value::Null, "spec of node {index} is null");
    }
    assert_eq!(
        reply.errors.len(),
        3,
        "one error per spec: {:?}",
        reply.errors
    );
    let mut paths: Vec<Value> = reply
        .errors
        .iter()
        .map(|error| {
            assert_eq!(error["extensions"]["code"], "STORAGE_UNAVAILABLE");
            error["path"].clone()
        })
        .collect();
    paths.sort_by_key(ToString::to_string);
    assert_eq!(
        paths,
        (0..3)
            .map(|index| json!(["plans", "nodes", index, "spec"]))
            .collect::<Vec<_>>()
    );

    let refused = team
        .owner
        .send(
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "during outage", "spec": "# lost?" }),
        )
        .await;
    assert_eq!(refused.code(), "STORAGE_UNAVAILABLE");
    assert_eq!(
        team.owner
            .code(
                UPDATE_PLAN,
                json!({ "planId": created[0].0, "spec": "# changed during outage" })
            )
            .await,
        "STORAGE_UNAVAILABLE"
    );
    let count = team
        .owner
        .ok(
            "query($projectId: ID!) { plans(projectId: $projectId) { totalCount } }",
            json!({ "projectId": team.project }),
        )
        .await;
    assert_eq!(
        count["plans"]["totalCount"], 3,
        "the refused plan was not created"
    );
    let (status, body) = server.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["specStore"], "unavailable");
    assert_eq!(body["database"], "ok");

    store.restart().await;

    let server = &server;
    eventually(Duration::from_secs(30), || async move {
        (server.readyz().await.0 == 200).then_some(())
    })
    .await;
    let recovered = team
        .owner
        .ok(PLANS_WITH_SPEC, json!({ "projectId": team.project }))
        .await;
    let specs = specs_by_plan(&recovered);
    for (plan, spec) in &created {
        assert_eq!(
            specs[plan],
            json!(spec),
            "the spec of {plan} is back, unchanged"
        );
    }
    let new_plan = team.plan("after the outage", "DRAFT").await;
    let read = team.owner.ok(GET_PLAN, json!({ "id": new_plan })).await;
    assert_eq!(read["plan"]["spec"], spec_of("after the outage"));
}

async fn check_store(args: &[String], env: &[(String, String)]) -> std::process::Output {
    let directory = tempfile::tempdir().expect("temp dir");
    tokio::process::Command::new(binary())
        .args(["admin", "check-store"])
        .args(args)
        .args(["--gcs-timeout", "5s", "--s3-timeout", "5s"])
        .envs(env.iter().map(|(name, value)| (name, value)))
        .current_dir(directory.path())
        .output()
        .await
        .expect("run plangraph admin check-store")
}

async fn check_store_gives_a_verdict_for_a_good_and_a_dead_store(kind: StoreKind) {
    let Some(store) = SpecBucket::new(kind).await else {
        return;
    };

    let good = check_store(&store.server_args(), &store.server_env()).await;
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "check-store failed: {stdout}");
    let verdict = stdout.lines().last().expect("a verdict line");
    assert!(
        verdict.starts_with(&format!("spec store {}", store.spec_store()))
            && verdict.contains(": OK"),
        "{verdict}"
    );
    assert_eq!(
        store
            .read(&format!("{SPECS_PREFIX}.plangraph/probe.md"))
            .await,
        "plangraph spec store probe\n"
    );

    let dead = check_store(&store.dead_server_args(), &store.server_env()).await;
    let stdout = String::from_utf8_lossy(&dead.stdout);
    assert!(!dead.status.success(), "a dead store passed: {stdout}");
    let verdict = stdout.lines().last().expect("a verdict line");
    assert!(verdict.contains(": FAILED: "), "{verdict}");
    assert!(String::from_utf8_lossy(&dead.stderr).contains("is not usable"));
}

/// `check-store` on an S3 store in an AWS environment made of shared config
/// files alone: the standard chain must find keys and region there.
async fn check_store_with_aws_profile(
    profile: &str,
    bucket: &str,
    endpoint: Option<&str>,
) -> std::process::Output {
    let directory = tempfile::tempdir().expect("temp dir");
    let credentials = directory.path().join("credentials");
    let config = directory.path().join("config");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = one\n\n\
         [plangraph]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = two\n\n\
         [regionless]\naws_access_key_id = AKIDREGIONLESS\naws_secret_access_key = three\n",
    )
    .expect("write credentials");
    std::fs::write(
        &config,
        "[default]\nregion = us-east-1\n\n[profile plangraph]\nregion = eu-west-3\n",
    )
    .expect("write config");
    let mut command = tokio::process::Command::new(binary());
    command
        .args(["admin", "check-store"])
        .args(["--spec-store", &format!("s3://{bucket}/specs")])
        .args(["--s3-timeout", "5s"]);
    if let Some(endpoint) = endpoint {
        command.args(["--s3-endpoint", endpoint]);
    }
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "PLANGRAPH_S3_REGION",
    ] {
        command.env_remove(name);
    }
    command
        .env("AWS_PROFILE", profile)
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", &config)
        // Not on EC2: the chain must not wait for an instance's metadata.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(directory.path())
        .output()
        .await
        .expect("run plangraph admin check-store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_and_region_come_from_the_chosen_aws_profile() {
    let Some(s3) = S3::shared().await else {
        return;
    };
    let bucket = s3.new_bucket().await;
    let relay = RecordingRelay::start(&s3.endpoint).await;

    let output = check_store_with_aws_profile("plangraph", &bucket, Some(&relay.endpoint)).await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "check-store failed: {stdout}");
    let sent = relay.sent();
    // Every signature's scope: "Credential=KEY/DATE/REGION/s3/aws4_request".
    let signers: std::collections::BTreeSet<String> = sent
        .split("Credential=")
        .skip(1)
        .filter_map(|rest| rest.split_once("/s3/aws4_request"))
        .map(|(scope, _)| {
            let parts: Vec<&str> = scope.split('/').collect();
            format!("{} {}", parts[0], parts[parts.len() - 1])
        })
        .collect();
    assert_eq!(
        signers,
        ["AKIDFROMPROFILE eu-west-3".to_owned()].into(),
        "every request signed with the profile's key for the profile's region: {sent}"
    );
    assert!(
        sent.contains(&format!("PUT /{bucket}/specs/.plangraph/probe.md")),
        "path-style requests under the prefix: {sent}"
    );
    assert!(
        sent.to_lowercase().contains("\r\nif-none-match: *\r\n"),
        "the probe is written only if absent: {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_on_aws_without_a_region_refuses_to_start() {
    let output = check_store_with_aws_profile("regionless", "some-bucket", None).await;

    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no AWS region") && stderr.contains("--s3-region"),
        "{stderr}"
    );
}
