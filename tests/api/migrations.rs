//! Every migration can be undone and redone, on both databases.

use crate::helpers::*;
use chrono::{Duration, Utc};
use entity::{plan, plan_spec_revision};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Alias, Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder, Statement};
use uuid::Uuid;

on_both_databases!(
    every_migration_goes_down_and_up_again,
    existing_plans_are_based_on_the_version_current_at_their_creation,
);

/// An index the drift migration (the one before the latest) creates.
const DRIFT_INDEX: &str = "ix_plan_spec_revisions_plan";

/// Whether `plan_events.note`, which the latest migration adds, is there.
async fn event_note_exists(db: &DatabaseConnection) -> bool {
    db.execute_unprepared("SELECT note FROM plan_events WHERE 1 = 0")
        .await
        .is_ok()
}

async fn index_exists(db: &DatabaseConnection, backend: Backend, name: &str) -> bool {
    let sql = match backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index' AND name = $1",
        Backend::Postgres => "SELECT indexname FROM pg_indexes WHERE indexname = $1",
    };
    db.query_one_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [name.into()],
    ))
    .await
    .expect("index query")
    .is_some()
}

async fn applied(db: &DatabaseConnection) -> usize {
    Migrator::get_applied_migrations(db)
        .await
        .expect("applied migrations")
        .len()
}

async fn connect(database: &Database) -> DatabaseConnection {
    let url = database.url().unwrap_or_else(|| {
        let file = database.data_dir.path().join("migrations.db");
        format!("sqlite://{}?mode=rwc", file.display())
    });
    sea_orm::Database::connect(&url).await.expect("connect")
}

async fn every_migration_goes_down_and_up_again(backend: Backend) {
    let database = Database::create(backend).await;
    let db = connect(&database).await;
    let all = Migrator::migrations().len();

    Migrator::up(&db, None).await.expect("up");
    assert_eq!(applied(&db).await, all);
    assert!(event_note_exists(&db).await);
    assert!(index_exists(&db, backend, DRIFT_INDEX).await);

    Migrator::down(&db, Some(1)).await.expect("down the latest");
    assert_eq!(applied(&db).await, all - 1);
    assert!(!event_note_exists(&db).await);
    assert!(index_exists(&db, backend, DRIFT_INDEX).await);

    Migrator::down(&db, Some(1))
        .await
        .expect("down the drift migration");
    assert_eq!(applied(&db).await, all - 2);
    assert!(!index_exists(&db, backend, DRIFT_INDEX).await);

    Migrator::down(&db, None).await.expect("down all the way");
    assert_eq!(applied(&db).await, 0);
    assert!(
        db.execute_unprepared("SELECT 1 FROM plans").await.is_err(),
        "no table is left behind"
    );

    Migrator::up(&db, None).await.expect("up again");
    assert_eq!(applied(&db).await, all);
    assert!(event_note_exists(&db).await);
    assert!(index_exists(&db, backend, DRIFT_INDEX).await);
}

/// Inserts one row into `table` with the schema builder (placeholders and
/// value types right for either database).
async fn insert(db: &DatabaseConnection, table: &str, row: Vec<(&str, SimpleExpr)>) {
    let (columns, values): (Vec<_>, Vec<_>) = row.into_iter().unzip();
    let statement = Query::insert()
        .into_table(Alias::new(table))
        .columns(columns.into_iter().map(Alias::new))
        .values_panic(values)
        .to_owned();
    db.execute(&statement).await.expect("insert");
}

/// The drift migration's backfill: a plan that existed before it is based on
/// the highest version of its feature created no later than the plan, with
/// that version's spec, and gets one spec revision for its current spec.
async fn existing_plans_are_based_on_the_version_current_at_their_creation(backend: Backend) {
    let database = Database::create(backend).await;
    let db = connect(&database).await;
    let all = u32::try_from(Migrator::migrations().len()).expect("few migrations");
    Migrator::up(&db, Some(all - 2))
        .await
        .expect("up to the drift migration");

    let start = Utc::now() - Duration::days(10);
    let at = |days: i64| SimpleExpr::from(start + Duration::days(days));
    let (user, project, feature) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    insert(
        &db,
        "users",
        vec![
            ("id", user.into()),
            ("email", "old@example.com".into()),
            ("is_admin", false.into()),
            ("created_at", at(0)),
        ],
    )
    .await;
    insert(
        &db,
        "projects",
        vec![
            ("id", project.into()),
            ("name", "Old".into()),
            ("created_by", user.into()),
            ("created_at", at(0)),
            ("updated_at", at(0)),
        ],
    )
    .await;
    insert(
        &db,
        "features",
        vec![
            ("id", feature.into()),
            ("project_id", project.into()),
            ("title", "F".into()),
            ("current_version", 3.into()),
            ("spec_key", "f3".into()),
            ("created_at", at(0)),
            ("updated_at", at(4)),
        ],
    )
    .await;
    for (version, day) in [(1, 0), (2, 2), (3, 4)] {
        insert(
            &db,
            "feature_versions",
            vec![
                ("id", Uuid::now_v7().into()),
                ("feature_id", feature.into()),
                ("version", version.into()),
                ("spec_key", format!("f{version}").into()),
                ("created_at", at(day)),
            ],
        )
        .await;
    }
    let mut plans = Vec::new();
    for day in [1, 3, 5] {
        let id = Uuid::now_v7();
        insert(
            &db,
            "plans",
            vec![
                ("id", id.into()),
                ("project_id", project.into()),
                ("feature_id", feature.into()),
                ("title", format!("made on day {day}").into()),
                ("status", "ready".into()),
                ("spec_key", format!("p{day}").into()),
                ("spec_sha256", "00".into()),
                ("spec_size", 7i64.into()),
                ("last_activity_at", at(day)),
                ("created_by", user.into()),
                ("created_at", at(day)),
                ("updated_at", at(day)),
            ],
        )
        .await;
        plans.push(id);
    }

    Migrator::up(&db, None).await.expect("the drift migration");

    let rows = plan::Entity::find()
        .order_by_asc(plan::Column::CreatedAt)
        .all(&db)
        .await
        .expect("plans");
    let based: Vec<(i32, &str)> = rows
        .iter()
        .map(|row| (row.based_on_version, row.based_on_spec_key.as_str()))
        .collect();
    assert_eq!(based, [(1, "f1"), (2, "f2"), (3, "f3")]);
    let revisions = plan_spec_revision::Entity::find()
        .order_by_asc(plan_spec_revision::Column::CreatedAt)
        .all(&db)
        .await
        .expect("revisions");
    let kept: Vec<(Uuid, &str, i64, Option<Uuid>)> = revisions
        .iter()
        .map(|row| {
            (
                row.plan_id,
                row.spec_key.as_str(),
                row.spec_size,
                row.created_by,
            )
        })
        .collect();
    assert_eq!(
        kept,
        [
            (plans[0], "p1", 7, None),
            (plans[1], "p3", 7, None),
            (plans[2], "p5", 7, None),
        ]
    );
}
