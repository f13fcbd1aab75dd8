//! list_projects: where an assistant finds project ids and its role.

use std::collections::HashMap;

use axum::http::request::Parts;
use rmcp::handler::server::common::schema_for_empty_input;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Tools;
use super::call::Reply;
use super::schema::output;
use super::views::{ProjectView, Text, counts_by_name, counts_text, text_time};
use crate::error::AppResult;
use crate::service::{Viewer, rfc3339};
use crate::workflow::PlanStatus;
use entity::project;

const LIST_PROJECTS: &str = "List the projects you are a member of, with your role and how many plans each has per status. Start here to find project ids.";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// list_projects.
#[derive(Serialize, JsonSchema)]
struct ProjectListResult {
    projects: Vec<ProjectView>,
}

#[tool_router(router = project_tools, vis = "pub(super)")]
impl Tools {
    #[tool(description = LIST_PROJECTS, input_schema = schema_for_empty_input(), output_schema = output::<ProjectListResult>(), annotations(read_only_hint = true))]
    async fn list_projects(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("list_projects", &request, arguments, |viewer, _: NoArgs| {
            self.list_projects_reply(viewer)
        })
        .await
    }
}

impl Tools {
    async fn list_projects_reply(&self, viewer: Viewer) -> AppResult<Reply> {
        let (projects, roles) = futures::try_join!(
            self.services.projects_of(&viewer),
            self.services.roles_in(viewer.id(), None),
        )?;
        let ids: Vec<Uuid> = projects.iter().map(|project| project.id).collect();
        let counts = if ids.is_empty() {
            HashMap::new()
        } else {
            self.services.plan_counts_by_project(&ids).await?
        };
        let mut text = Text::headline(format!("✓ Your Projects ({}):", projects.len()));
        if projects.is_empty() {
            text.line("You are not a member of any project yet; ask a project owner to add you.");
        }
        let mut views = Vec::with_capacity(projects.len());
        for (number, project) in projects.iter().enumerate() {
            let role = roles.get(&project.id).map(|role| role.as_str().to_owned());
            let view = project_view(project, role.clone(), &counts);
            text.line(format!("{}. {}", number + 1, project.name))
                .line(format!("   ID: {}", project.id))
                .line(format!("   Role: {}", role.as_deref().unwrap_or("none")))
                .line(format!("   Plans: {}", counts_text(&view.plan_counts)));
            if let Some(description) = &project.description {
                text.line(format!("   Description: {description}"));
            }
            text.line(format!("   Created: {}", text_time(project.created_at)))
                .blank();
            views.push(view);
        }
        Reply::new(&text, &ProjectListResult { projects: views })
    }
}

fn project_view(
    project: &project::Model,
    role: Option<String>,
    counts: &HashMap<Uuid, HashMap<PlanStatus, u64>>,
) -> ProjectView {
    ProjectView {
        id: project.id.to_string(),
        name: project.name.clone(),
        description: project.description.clone(),
        role,
        plan_counts: counts_by_name(counts.get(&project.id)),
        created_at: rfc3339(project.created_at),
    }
}
