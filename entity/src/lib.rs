//! sea-orm entities, one module per table. The server crate owns every rule;
//! these types only describe rows.

pub mod api_key;
pub mod enums;
pub mod feature;
pub mod feature_version;
pub mod plan;
pub mod plan_event;
pub mod plan_spec_revision;
pub mod project;
pub mod project_member;
pub mod user;
pub mod webhook;
pub mod webhook_delivery;
