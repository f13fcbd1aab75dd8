//! Every migration can be undone and redone, on both databases.

use crate::helpers::*;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

on_both_databases!(every_migration_goes_down_and_up_again);

const LATEST_INDEX: &str = "ix_plan_dependencies_blocker";

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

async fn every_migration_goes_down_and_up_again(backend: Backend) {
    let database = Database::create(backend).await;
    let url = database.url().unwrap_or_else(|| {
        let file = database.data_dir.path().join("migrations.db");
        format!("sqlite://{}?mode=rwc", file.display())
    });
    let db = sea_orm::Database::connect(&url).await.expect("connect");
    let all = Migrator::migrations().len();

    Migrator::up(&db, None).await.expect("up");
    assert_eq!(applied(&db).await, all);
    assert!(index_exists(&db, backend, LATEST_INDEX).await);

    Migrator::down(&db, Some(1)).await.expect("down the latest");
    assert_eq!(applied(&db).await, all - 1);
    assert!(!index_exists(&db, backend, LATEST_INDEX).await);

    Migrator::down(&db, None).await.expect("down all the way");
    assert_eq!(applied(&db).await, 0);
    assert!(
        db.execute_unprepared("SELECT 1 FROM plans").await.is_err(),
        "no table is left behind"
    );

    Migrator::up(&db, None).await.expect("up again");
    assert_eq!(applied(&db).await, all);
    assert!(index_exists(&db, backend, LATEST_INDEX).await);
}
