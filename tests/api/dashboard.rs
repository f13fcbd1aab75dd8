//! Dashboard reads: ordering, paging both ways, filters, counts, a fixed
//! number of SQL statements per page, query limits and compression.

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    plans_page_forward_and_backward_in_every_order,
    filters_search_and_updated_since,
    plan_counts_per_status,
    project_features_page,
    statements_per_page_do_not_grow_with_page_size,
    related_lists_of_a_page_load_in_batches,
    oversized_and_malformed_queries_are_refused_clearly,
    a_page_reads_every_column_as_a_single_plan_does,
    rows_resolved_inline_read_as_resolved_one_field_at_a_time,
);

/// Rows select their feature, project and claimer too, so that paging,
/// ordering and filters are exercised on the page statement that joins them.
const PAGE: &str = "query($featureId: ID, $orderBy: PlanOrder, $first: Int, $after: String, $last: Int, $before: String, $search: String, $updatedSince: DateTime) {
    plans(featureId: $featureId, orderBy: $orderBy, first: $first, after: $after, last: $last, before: $before, search: $search, updatedSince: $updatedSince) {
      totalCount edges { cursor node { title feature { title } project { name } claimedBy { email } } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

fn titles(page: &Value) -> Vec<String> {
    page["plans"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["title"].as_str().expect("title").to_owned())
        .collect()
}

/// Walks the whole list forward, `size` at a time.
async fn walk_forward(client: &Client, base: Value, size: i32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut totals = Vec::new();
    let mut after = Value::Null;
    loop {
        let mut vars = base.clone();
        vars["first"] = json!(size);
        vars["after"] = after;
        let page = client.ok(PAGE, vars).await;
        seen.extend(titles(&page));
        totals.push(page["plans"]["totalCount"].clone());
        if page["plans"]["pageInfo"]["hasNextPage"] != true {
            // The first page counts in its own statement, later ones apart.
            assert!(
                totals.iter().all(|total| *total == json!(seen.len())),
                "totalCount of each page: {totals:?}, {} plans",
                seen.len()
            );
            return seen;
        }
        after = page["plans"]["pageInfo"]["endCursor"].clone();
    }
}

/// Walks the whole list backward from the end, `size` at a time.
async fn walk_backward(client: &Client, base: Value, size: i32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut before = Value::Null;
    loop {
        let mut vars = base.clone();
        vars["last"] = json!(size);
        vars["before"] = before;
        let page = client.ok(PAGE, vars).await;
        let mut chunk = titles(&page);
        chunk.extend(seen);
        seen = chunk;
        if page["plans"]["pageInfo"]["hasPreviousPage"] != true {
            return seen;
        }
        before = page["plans"]["pageInfo"]["startCursor"].clone();
    }
}

async fn plans_page_forward_and_backward_in_every_order(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let names = [
        "delta", "Alpha", "echo", "charlie", "bravo", "golf", "foxtrot",
    ];
    let mut ids = Vec::new();
    for name in names {
        ids.push(team.plan(name, "READY").await);
    }
    // Touch one plan so UPDATED_AT differs from creation order.
    team.owner
        .ok(UPDATE_PLAN, json!({ "planId": ids[0], "spec": "newer" }))
        .await;

    let feature = json!({ "featureId": team.feature });
    let created: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(
        walk_forward(&team.viewer, feature.clone(), 3).await,
        created,
        "default: creation order"
    );
    assert_eq!(
        walk_backward(&team.viewer, feature.clone(), 3).await,
        created
    );

    let by_title = json!({ "featureId": team.feature, "orderBy": { "field": "TITLE" } });
    let forward = walk_forward(&team.viewer, by_title.clone(), 2).await;
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(
        forward, sorted,
        "title order (database collation; these names sort the same everywhere)"
    );
    assert_eq!(walk_backward(&team.viewer, by_title, 2).await, sorted);

    let newest_first = json!({ "featureId": team.feature, "orderBy": { "field": "UPDATED_AT", "direction": "DESC" } });
    let descending = walk_forward(&team.viewer, newest_first.clone(), 4).await;
    assert_eq!(descending[0], "delta", "the updated plan comes first");
    let mut rest: Vec<String> = created[1..].to_vec();
    rest.reverse();
    assert_eq!(descending[1..], rest[..]);
    assert_eq!(
        walk_backward(&team.viewer, newest_first, 4).await,
        descending
    );

    // A cursor belongs to the ordering it came from.
    let page = team
        .viewer
        .ok(PAGE, json!({ "featureId": team.feature, "first": 1 }))
        .await;
    let cursor = page["plans"]["pageInfo"]["endCursor"].clone();
    let mixed =
        json!({ "featureId": team.feature, "orderBy": { "field": "TITLE" }, "after": cursor });
    assert_eq!(team.viewer.code(PAGE, mixed).await, "BAD_USER_INPUT");
    let both = json!({ "featureId": team.feature, "first": 1, "last": 1 });
    assert_eq!(team.viewer.code(PAGE, both).await, "BAD_USER_INPUT");
    assert_eq!(page["plans"]["totalCount"], 7);
}

async fn filters_search_and_updated_since(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    for title in [
        "OAuth login",
        "oauth refresh tokens",
        "Profile page",
        "100% coverage",
        "snake_case names",
    ] {
        team.plan(title, "READY").await;
    }
    let search = |text: &str| json!({ "search": text });
    let found = |page: Value| {
        let mut titles = titles(&page);
        titles.sort();
        titles
    };
    assert_eq!(
        found(team.viewer.ok(PAGE, search("OAUTH")).await),
        ["OAuth login", "oauth refresh tokens"]
    );
    assert_eq!(
        found(team.viewer.ok(PAGE, search("0%")).await),
        ["100% coverage"],
        "% is literal"
    );
    assert_eq!(
        found(team.viewer.ok(PAGE, search("e_c")).await),
        ["snake_case names"],
        "_ is literal"
    );
    assert_eq!(
        found(team.viewer.ok(PAGE, search("nothing")).await),
        Vec::<String>::new()
    );

    let cut = team
        .viewer
        .ok("{ plans(first: 100) { nodes { updatedAt } } }", json!({}))
        .await["plans"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| node["updatedAt"].as_str().expect("time").to_owned())
        .max()
        .expect("plans exist");
    clock_moves_past(&cut).await;
    let later = team.plan("Later plan", "DRAFT").await;
    let since = team
        .viewer
        .ok(
            "query($since: DateTime) { plans(updatedSince: $since) { nodes { id } } }",
            json!({ "since": cut }),
        )
        .await;
    let ids: Vec<&str> = since["plans"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("id"))
        .collect();
    assert!(ids.contains(&later.as_str()));
    assert_eq!(
        ids.len(),
        2,
        "the last plan before the cut (updated at exactly `cut`) and the later one"
    );
    let bad = team
        .viewer
        .code(
            "{ plans(updatedSince: \"yesterday\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(bad, "BAD_USER_INPUT");
}

async fn plan_counts_per_status(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    team.plan_in("a", "DRAFT").await;
    team.plan_in("b", "READY").await;
    team.plan_in("c", "READY").await;
    team.plan_in("d", "IN_PROGRESS").await;
    team.plan_in("e", "COMPLETED").await;
    let other = team
        .owner
        .create_feature(&team.project, "Other", "# o")
        .await;
    team.plan_of(&other, "f", "DRAFT").await;
    let counts = "draft ready claimed inProgress stalled review completed failed total";
    let query = format!(
        "query($feature: ID!, $project: ID!) {{
           feature(id: $feature) {{ planCounts {{ {counts} }} }}
           project(id: $project) {{ planCounts {{ {counts} }} features {{ nodes {{ title planCounts {{ total }} }} }} }} }}"
    );
    let data = team
        .viewer
        .ok(
            &query,
            json!({ "feature": team.feature, "project": team.project }),
        )
        .await;
    assert_eq!(
        data["feature"]["planCounts"],
        json!({ "draft": 1, "ready": 2, "claimed": 0, "inProgress": 1, "stalled": 0, "review": 0, "completed": 1, "failed": 0, "total": 5 })
    );
    assert_eq!(data["project"]["planCounts"]["draft"], 2);
    assert_eq!(data["project"]["planCounts"]["total"], 6);
    assert_eq!(
        data["project"]["features"]["nodes"],
        json!([{ "title": "User Authentication", "planCounts": { "total": 5 } }, { "title": "Other", "planCounts": { "total": 1 } }])
    );
}

async fn project_features_page(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    for index in 0..4 {
        team.owner
            .ok(
                CREATE_FEATURE,
                json!({ "projectId": team.project, "title": format!("F{index}"), "spec": "# f" }),
            )
            .await;
    }
    let query =
        "query($id: ID!, $after: String) { project(id: $id) { features(first: 2, after: $after) {
        totalCount nodes { title } pageInfo { hasNextPage endCursor } } } }";
    let first = team.viewer.ok(query, json!({ "id": team.project })).await;
    let features = &first["project"]["features"];
    assert_eq!(features["totalCount"], 5);
    assert_eq!(
        features["nodes"],
        json!([{ "title": "User Authentication" }, { "title": "F0" }])
    );
    let second = team
        .viewer
        .ok(
            query,
            json!({ "id": team.project, "after": features["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(
        second["project"]["features"]["nodes"],
        json!([{ "title": "F1" }, { "title": "F2" }])
    );
    assert_eq!(
        second["project"]["features"]["pageInfo"]["hasNextPage"],
        true
    );
}

async fn statements_executed(server: &Server) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.base_url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix("plangraph_db_statements_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("plangraph_db_statements_total in /metrics")
}

/// The statements one request of `query` costs, and its answer. The server's
/// background tasks (the PostgreSQL event listener and the webhook worker
/// catching up on the setup's events) may run a statement during a request;
/// they only ever add, so the least of three runs is the request's own cost.
async fn statements_of(
    server: &Server,
    client: &Client,
    query: &str,
    variables: Value,
) -> (u64, Value) {
    let mut runs = Vec::new();
    let mut answer = Value::Null;
    for _ in 0..3 {
        let before = statements_executed(server).await;
        answer = client.ok(query, variables.clone()).await;
        runs.push(statements_executed(server).await - before);
    }
    (runs.into_iter().min().unwrap_or_default(), answer)
}

/// The dashboard query: its SQL statement count is the same for 10 and 100
/// rows (DataLoaders batch every relation) and small.
async fn statements_per_page_do_not_grow_with_page_size(backend: Backend) {
    let server = Server::start_with(backend, &NO_BACKGROUND_STATEMENTS).await;
    let team = Team::new(&server).await;
    for index in 0..100 {
        let status = if index % 3 == 0 { "CLAIMED" } else { "READY" };
        team.plan_in(&format!("plan {index:03}"), status).await;
    }
    let dashboard = "query($featureId: ID!, $first: Int) { plans(featureId: $featureId, first: $first) {
        nodes { title status lastActivityAt claimedBy { email } feature { title } project { name } } } }";
    team.viewer
        .ok(dashboard, json!({ "featureId": team.feature, "first": 1 }))
        .await; // warm-up
    let mut costs = Vec::new();
    for first in [10, 100] {
        let variables = json!({ "featureId": team.feature, "first": first });
        let (cost, page) = statements_of(&server, &team.viewer, dashboard, variables).await;
        costs.push(cost);
        let nodes = page["plans"]["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), first);
        // The related rows come from the page's joins: every row has them,
        // and claimers exactly where a plan is claimed.
        for (index, node) in nodes.iter().enumerate() {
            assert_eq!(node["title"], format!("plan {index:03}"));
            assert_eq!(node["feature"]["title"], "User Authentication");
            assert_eq!(node["project"]["name"], "Task Manager");
            let claimer = if index % 3 == 0 {
                json!({ "email": "worker@example.com" })
            } else {
                Value::Null
            };
            assert_eq!(node["claimedBy"], claimer, "row {index}: {node}");
        }
    }
    assert_eq!(costs[0], costs[1], "statements per page: {costs:?}");
    assert!(
        costs[0] <= 2,
        "at most 2 statements (the API key, the page joined with feature, project and claimer): {costs:?}"
    );
    // A first page's totalCount comes with its rows.
    let counted = "query($featureId: ID!) { plans(featureId: $featureId, first: 10) { totalCount nodes { title } } }";
    let variables = json!({ "featureId": team.feature });
    let (cost, page) = statements_of(&server, &team.viewer, counted, variables).await;
    assert_eq!(cost, costs[0]);
    assert_eq!(page["plans"]["totalCount"], 100);
    // So does an empty one's: the same statement saw no plan, so the list
    // is empty, whatever was created since (no second count to disagree).
    let none = "query($featureId: ID!) { plans(featureId: $featureId, first: 10, search: \"no such title\") { totalCount nodes { title } } }";
    let variables = json!({ "featureId": team.feature });
    let (cost, page) = statements_of(&server, &team.viewer, none, variables).await;
    assert_eq!(cost, costs[0]);
    assert_eq!(page["plans"]["totalCount"], 0);
    assert_eq!(page["plans"]["nodes"], json!([]));
}

/// The relations a detail view shows for every row (its events, the version
/// it cut, its project's members and the viewer's role) load in one batch
/// per relation, whatever the page size.
async fn related_lists_of_a_page_load_in_batches(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            &NO_BACKGROUND_STATEMENTS[..],
            &["--max-query-complexity", "1000000"],
        ]
        .concat(),
    )
    .await;
    let team = Team::new(&server).await;
    for index in 0..60 {
        let status = if index % 2 == 0 { "COMPLETED" } else { "READY" };
        team.plan_in(&format!("plan {index:03}"), status).await;
    }
    let detail =
        "query($featureId: ID!, $first: Int) { plans(featureId: $featureId, first: $first) {
        nodes { title events { kind } implementedFeatureVersion { version }
                project { viewerRole members { role } } } } }";
    team.viewer
        .ok(detail, json!({ "featureId": team.feature, "first": 1 }))
        .await; // warm-up
    let mut costs = Vec::new();
    for first in [6, 60] {
        let variables = json!({ "featureId": team.feature, "first": first });
        let (cost, page) = statements_of(&server, &team.viewer, detail, variables).await;
        costs.push(cost);
        let nodes = page["plans"]["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), first);
        for (index, node) in nodes.iter().enumerate() {
            let kinds = node["events"].as_array().expect("events").len();
            let project = &node["project"];
            assert_eq!(project["viewerRole"], "VIEWER");
            assert_eq!(project["members"].as_array().map(Vec::len), Some(3));
            if index % 2 == 0 {
                // Created, claimed, completed; the version it cut.
                assert_eq!(kinds, 3, "{node}");
                assert!(node["implementedFeatureVersion"]["version"].as_i64() > Some(1));
            } else {
                // Created; a completion that leaves the spec as it was
                // drifts nothing.
                assert_eq!(kinds, 1, "{node}");
                assert!(node["implementedFeatureVersion"].is_null());
            }
        }
    }
    assert_eq!(costs[0], costs[1], "statements per page: {costs:?}");
}

async fn oversized_and_malformed_queries_are_refused_clearly(backend: Backend) {
    // Complexity is generous here so that depth is the limit this query hits.
    let server = Server::start_with(
        backend,
        &[
            "--max-query-depth",
            "8",
            "--max-query-complexity",
            "1000000",
        ],
    )
    .await;
    let team = Team::new(&server).await;
    let deep = "{ plans { nodes { feature { project { features { nodes { project { features { nodes { title } } } } } } } } } }";
    let reply = team.viewer.send(deep, json!({})).await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert!(
        reply.message().to_lowercase().contains("nested too deep"),
        "{}",
        reply.message()
    );
    for broken in [
        "{ plans { nodes { nope } } }",
        "{ plans(first: \"ten\") { totalCount } }",
        "query {",
    ] {
        let reply = team.viewer.send(broken, json!({})).await;
        assert_eq!(reply.code(), "BAD_USER_INPUT", "{broken}");
    }
    // The introspection query GraphiQL sends fits within the default limits.
    let default_server = Server::start(Backend::Sqlite).await;
    let introspection = default_server
        .anonymous()
        .ok(INTROSPECTION, json!({}))
        .await;
    assert!(
        introspection["__schema"]["types"]
            .as_array()
            .expect("types")
            .len()
            > 20
    );

    let compressed = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
        .post(format!("{}/graphql", server.base_url))
        .header("accept-encoding", "gzip")
        .bearer_auth(team.viewer.key())
        .json(&json!({ "query": INTROSPECTION }))
        .send()
        .await
        .expect("request");
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    assert_eq!(compressed.headers()["cache-control"], "no-store");
}

/// graphql-js's getIntrospectionQuery(), as GraphiQL sends it.
const INTROSPECTION: &str = "query IntrospectionQuery {
  __schema { queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType } directives { name description locations args { ...InputValue } } } }
fragment FullType on __Type { kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue } interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...TypeRef } }
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
  ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";

/// Every field a plan row answers from its own columns, nulls included.
/// States `Team::plan_in` takes a plan to, for pages that should show each.
const EVERY_STATUS_BUT_FAILED: [&str; 6] = [
    "DRAFT",
    "READY",
    "CLAIMED",
    "IN_PROGRESS",
    "REVIEW",
    "COMPLETED",
];

/// Every field of a plan, objects by their id (or a scalar of theirs); the
/// rows a page joins in (claimer, feature, project) with every column.
const ROW_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "status",
    "spec",
    "specSha256",
    "specSize",
    "workArtifacts",
    "claimedBy { id email displayName isAdmin createdAt }",
    "claimedAt",
    "submittedBy { id }",
    "implementedVersion",
    "implementedFeatureVersion { version }",
    "lastActivityAt",
    "createdBy { id }",
    "createdAt",
    "updatedAt",
    "feature { id title description currentVersion spec project { id } createdAt updatedAt }",
    "project { id name description createdBy { id } createdAt updatedAt }",
    "basedOnVersion",
    "specDrift { behind }",
    "specRevisions { number }",
    "priority",
    "blockedBy { id }",
    "blocks { id }",
    "isBlocked",
    "claimToken",
    "leaseExpiresAt",
    "events { kind }",
];

/// List pages decode their rows by column position (`service/plan_rows.rs`),
/// single plans through sea-orm by column name: both must read the same
/// values, for plans in every state (so every nullable column is seen both
/// null and set). A page reads only the columns its fields need, so each
/// field is also read on a page that selects it alone.
async fn a_page_reads_every_column_as_a_single_plan_does(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let mut plans = Vec::new();
    for status in EVERY_STATUS_BUT_FAILED {
        plans.push(team.plan_in(&format!("plan {status}"), status).await);
    }
    let described =
        "mutation($featureId: ID!) { createPlan(featureId: $featureId, title: \"described\",
        description: \"Why and how\", specContent: \"# Spec\", priority: 0) { id } }";
    let created = team
        .owner
        .ok(described, json!({ "featureId": team.feature }))
        .await;
    plans.push(created["createPlan"]["id"].as_str().expect("id").to_owned());
    let page_of = |fields: &str| {
        format!(
            "query($featureId: ID!) {{ plans(featureId: $featureId, first: 10) {{ nodes {{ {fields} }} }} }}"
        )
    };
    let all_fields = ROW_FIELDS.join(" ");
    let page = team
        .viewer
        .ok(&page_of(&all_fields), json!({ "featureId": team.feature }))
        .await;
    let nodes = page["plans"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), plans.len(), "{page}");
    let single = format!("query($id: ID!) {{ plan(id: $id) {{ {all_fields} }} }}");
    for node in nodes {
        let alone = team.viewer.ok(&single, json!({ "id": node["id"] })).await;
        assert_eq!(
            node, &alone["plan"],
            "the page's row differs from the plan read alone"
        );
    }
    // A page reads only the plan columns its fields need and joins only the
    // columns of the feature, project and claimer it shows: each field, and
    // each joined column, on a page that selects it alone.
    let mut alone: Vec<(String, String)> = ROW_FIELDS
        .iter()
        .map(|field| {
            let name = field.split(' ').next().expect("a field name");
            (format!("id {field}"), format!("/{name}"))
        })
        .collect();
    for (object, fields) in [
        (
            "claimedBy",
            &["id", "email", "displayName", "isAdmin", "createdAt"][..],
        ),
        (
            "feature",
            &[
                "id",
                "title",
                "description",
                "currentVersion",
                "createdAt",
                "updatedAt",
            ],
        ),
        (
            "project",
            &["id", "name", "description", "createdAt", "updatedAt"],
        ),
    ] {
        for field in fields {
            alone.push((
                format!("id {object} {{ {field} }}"),
                format!("/{object}/{field}"),
            ));
        }
    }
    for (selection, pointer) in alone {
        let narrow = team
            .viewer
            .ok(&page_of(&selection), json!({ "featureId": team.feature }))
            .await;
        let narrow_nodes = narrow["plans"]["nodes"].as_array().expect("nodes");
        assert_eq!(narrow_nodes.len(), nodes.len(), "{narrow}");
        for (narrow_node, node) in narrow_nodes.iter().zip(nodes) {
            assert_eq!(narrow_node["id"], node["id"], "{narrow}");
            assert_eq!(
                narrow_node.pointer(&pointer),
                node.pointer(&pointer),
                "`{selection}` on a page that selects it alone differs from a page of every field"
            );
        }
    }
    // Each nullable column was read both null and set.
    for field in [
        "description",
        "workArtifacts",
        "claimedBy",
        "claimedAt",
        "submittedBy",
        "implementedVersion",
        "leaseExpiresAt",
    ] {
        let set = nodes.iter().filter(|node| !node[field].is_null()).count();
        assert!(
            0 < set && set < nodes.len(),
            "{field}: set on {set} of {page}"
        );
    }
}

/// Everything a plan page may show without waiting, so that its rows and
/// the objects under them resolve inline (`graphql/inline.rs`), with an
/// alias and `__typename` at two depths (`inline`); or the same with each
/// object's fields inside a fragment, which async-graphql resolves itself.
fn row_selection(inline: bool) -> String {
    let object = |type_name: &str, fields: &str| {
        if inline {
            fields.to_owned()
        } else {
            format!("... on {type_name} {{ {fields} }}")
        }
    };
    let user = object("User", "id email displayName isAdmin createdAt");
    let feature = object(
        "Feature",
        "__typename id title description currentVersion createdAt updatedAt",
    );
    let project = object("Project", "id name description createdAt updatedAt");
    object(
        "Plan",
        &format!(
            "__typename id title heading: title description status specSha256 specSize
            workArtifacts claimedAt implementedVersion lastActivityAt createdAt updatedAt
            basedOnVersion priority claimToken leaseExpiresAt claimedBy {{ {user} }}
            submittedBy {{ {user} }} createdBy {{ {user} }} feature {{ {feature} }}
            project {{ {project} }}"
        ),
    )
}

/// A page whose rows show only fields that never wait resolves them one
/// after another (`graphql/inline.rs`); the same fields inside a fragment go
/// through async-graphql's concurrent resolution. Both must answer alike,
/// for plans in every state, and in the order the fields were asked for.
async fn rows_resolved_inline_read_as_resolved_one_field_at_a_time(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    for status in EVERY_STATUS_BUT_FAILED {
        team.plan_in(&format!("plan {status}"), status).await;
    }
    // The bodies as sent, so that field order counts too.
    let body_of = |selection: String| {
        let query = format!(
            "query($featureId: ID!) {{ plans(featureId: $featureId, first: 10) {{ nodes {{ {selection} }} }} }}"
        );
        let server = &server;
        let team = &team;
        async move {
            reqwest::Client::new()
                .post(format!("{}/graphql", server.base_url))
                .bearer_auth(team.viewer.key())
                .json(&json!({ "query": query, "variables": { "featureId": team.feature } }))
                .send()
                .await
                .expect("the server answers")
                .text()
                .await
                .expect("a body")
        }
    };
    let inline = body_of(row_selection(true)).await;
    let general = body_of(row_selection(false)).await;
    assert_eq!(inline, general);

    let page: Value = serde_json::from_str(&inline).expect("JSON");
    assert!(page.get("errors").is_none(), "{page}");
    let nodes = page["data"]["plans"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 6, "{page}");
    let claimed = nodes
        .iter()
        .find(|node| node["status"] == "CLAIMED")
        .expect("the claimed plan");
    assert_eq!(claimed["__typename"], "Plan");
    assert_eq!(claimed["heading"], "plan CLAIMED");
    assert_eq!(claimed["claimedBy"]["email"], "worker@example.com");
    // A claim's token is in the claim's answer only, never in a read.
    assert!(claimed["claimToken"].is_null(), "{claimed}");
    assert_eq!(claimed["feature"]["__typename"], "Feature");
    assert_eq!(claimed["project"]["name"], "Task Manager");
    assert!(
        inline.starts_with(r#"{"data":{"plans":{"nodes":[{"__typename":"Plan","id":"#),
        "fields in the order asked for: {inline}"
    );
}
