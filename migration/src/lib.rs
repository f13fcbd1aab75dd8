//! Schema migrations for SQLite and PostgreSQL. Every migration has a `down`.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_initial;
mod m20261125_000002_plan_list_order;
mod m20261129_000005_webhooks;
mod m20261129_000006_plan_fleet;
mod m20261129_000007_spec_drift;
mod m20261207_000008_agent_contract;

/// An index named `name` on `columns` of `table`, created only if missing.
fn index(table: &str, name: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement
        .name(name)
        .table(Alias::new(table))
        .if_not_exists();
    for column in columns {
        statement.col(Alias::new(*column));
    }
    statement.to_owned()
}

/// A foreign key `fk_{from}_{column}` from `from.column` to `to.id`.
fn foreign_key(
    from: &str,
    column: &str,
    to: &str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from}_{column}"))
        .from(Alias::new(from), Alias::new(column))
        .to(Alias::new(to), Alias::new("id"))
        .on_delete(on_delete)
        .to_owned()
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261125_000002_plan_list_order::Migration),
            Box::new(m20261129_000005_webhooks::Migration),
            Box::new(m20261129_000006_plan_fleet::Migration),
            Box::new(m20261129_000007_spec_drift::Migration),
            Box::new(m20261207_000008_agent_contract::Migration),
        ]
    }
}
