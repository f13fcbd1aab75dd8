//! What plans need from features: create_feature, list_features,
//! get_feature, update_feature, list_feature_versions.

use std::collections::HashMap;

use axum::http::request::Parts;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Tools;
use super::call::Reply;
use super::schema::{input, output};
use super::views::{
    FeatureRef, FeatureView, ProjectRef, Related, Text, VersionView, counts_by_name, counts_text,
    text_time,
};
use crate::error::AppResult;
use crate::service::features::FeatureUpdate;
use crate::service::pagination::Window;
use crate::service::{Viewer, rfc3339};
use crate::workflow::PlanStatus;
use entity::{feature, plan, project};

/// The longest list one call returns (the service's largest page).
const LIST_LIMIT: i32 = 100;

const CREATE_FEATURE: &str = "Create a feature (what to build) in a project, with its specification in markdown. A feature starts at version v1; every completed plan creates the next version. Write implementation plans for it with create_plan.";
const LIST_FEATURES: &str = "List the features of a project with their current version and how many plans they have in each status.";
const GET_FEATURE: &str = "Get a feature (what to build) with its full specification fetched from cloud storage. Read it before writing an implementation plan.";
const UPDATE_FEATURE: &str = "Update a feature's specification, and optionally its title and description. By default this amends the current version; with new_version: true it creates the next version instead.";
const LIST_FEATURE_VERSIONS: &str =
    "List a feature's versions: which plan implemented each version, who did the work, and when.";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateFeatureArgs {
    /// UUID of the project the feature belongs to
    project_id: String,
    /// Short descriptive title for the feature
    title: String,
    /// Brief summary of the feature
    description: Option<String>,
    /// What to build, in markdown: requirements and acceptance criteria (plans say how)
    spec_content: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListFeaturesArgs {
    /// UUID of the project whose features to list
    project_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetFeatureArgs {
    /// UUID of the feature to retrieve
    feature_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdateFeatureArgs {
    /// UUID of the feature to update
    feature_id: String,
    /// The feature's new specification in markdown
    spec_content: String,
    /// New title; unchanged when omitted
    title: Option<String>,
    /// New description; unchanged when omitted
    description: Option<String>,
    /// true creates the next feature version with this spec; false (default) amends the current version
    #[serde(default)]
    new_version: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListFeatureVersionsArgs {
    /// UUID of the feature whose version history to list
    feature_id: String,
}

/// One feature (create_feature, get_feature, update_feature).
#[derive(Serialize, JsonSchema)]
struct FeatureResult {
    feature: FeatureView,
}

/// list_features.
#[derive(Serialize, JsonSchema)]
struct FeatureListResult {
    features: Vec<FeatureView>,
    /// How many features the project has in all.
    total: u64,
    /// More features exist than this list holds.
    truncated: bool,
}

/// list_feature_versions.
#[derive(Serialize, JsonSchema)]
struct VersionListResult {
    feature: FeatureRef,
    /// Oldest first.
    versions: Vec<VersionView>,
}

#[tool_router(router = feature_tools, vis = "pub(super)")]
impl Tools {
    #[tool(description = CREATE_FEATURE, input_schema = input::<CreateFeatureArgs>(), output_schema = output::<FeatureResult>())]
    async fn create_feature(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("create_feature", &request, arguments, |viewer, args| {
            self.create_feature_reply(viewer, args)
        })
        .await
    }

    #[tool(description = LIST_FEATURES, input_schema = input::<ListFeaturesArgs>(), output_schema = output::<FeatureListResult>(), annotations(read_only_hint = true))]
    async fn list_features(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("list_features", &request, arguments, |viewer, args| {
            self.list_features_reply(viewer, args)
        })
        .await
    }

    #[tool(description = GET_FEATURE, input_schema = input::<GetFeatureArgs>(), output_schema = output::<FeatureResult>(), annotations(read_only_hint = true))]
    async fn get_feature(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("get_feature", &request, arguments, |viewer, args| {
            self.get_feature_reply(viewer, args)
        })
        .await
    }

    #[tool(description = UPDATE_FEATURE, input_schema = input::<UpdateFeatureArgs>(), output_schema = output::<FeatureResult>())]
    async fn update_feature(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("update_feature", &request, arguments, |viewer, args| {
            self.update_feature_reply(viewer, args)
        })
        .await
    }

    #[tool(description = LIST_FEATURE_VERSIONS, input_schema = input::<ListFeatureVersionsArgs>(), output_schema = output::<VersionListResult>(), annotations(read_only_hint = true))]
    async fn list_feature_versions(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run(
            "list_feature_versions",
            &request,
            arguments,
            |viewer, args| self.list_feature_versions_reply(viewer, args),
        )
        .await
    }
}

impl Tools {
    async fn create_feature_reply(
        &self,
        viewer: Viewer,
        args: CreateFeatureArgs,
    ) -> AppResult<Reply> {
        let feature = self
            .services
            .create_feature(
                &viewer,
                &args.project_id,
                &args.title,
                args.description,
                &args.spec_content,
            )
            .await?;
        let project = self.services.find_project(feature.project_id).await?;
        let mut text = Text::headline("✓ Feature created successfully!");
        text.field("Feature", &feature.title)
            .field("ID", feature.id)
            .field("Project", format!("{} ({})", project.name, project.id))
            .field("Version", format!("v{}", feature.current_version))
            .optional_field("Description", feature.description.as_deref())
            .field("Created", text_time(feature.created_at))
            .blank()
            .line(format!(
                "Write implementation plans for it with create_plan (feature_id: {}).",
                feature.id
            ));
        let view = feature_view(&feature, &project, &HashMap::new(), None);
        Reply::new(&text, &FeatureResult { feature: view })
    }

    async fn list_features_reply(
        &self,
        viewer: Viewer,
        args: ListFeaturesArgs,
    ) -> AppResult<Reply> {
        let project = self.services.project(&viewer, &args.project_id).await?;
        let window = Window::new(Some(LIST_LIMIT), None, None, None, false)?;
        let (page, total) = futures::try_join!(
            self.services.list_features(project.id, &window),
            self.services.count_features(project.id),
        )?;
        let features = page.rows;
        let ids: Vec<Uuid> = features.iter().map(|feature| feature.id).collect();
        let counts = if ids.is_empty() {
            HashMap::new()
        } else {
            self.services.plan_counts_by_feature(&ids).await?
        };
        let mut text = Text::headline(format!("✓ Features of {} ({total}):", project.name));
        if features.is_empty() {
            text.line("No features yet; add one with create_feature.");
        }
        let mut views = Vec::with_capacity(features.len());
        for (number, feature) in features.iter().enumerate() {
            let view = feature_view(feature, &project, &counts, None);
            text.line(format!("{}. {}", number + 1, feature.title))
                .line(format!("   ID: {}", feature.id))
                .line(format!("   Version: v{}", feature.current_version))
                .line(format!("   Plans: {}", counts_text(&view.plan_counts)))
                .line(format!("   Updated: {}", text_time(feature.updated_at)))
                .blank();
            views.push(view);
        }
        let truncated = total > features.len() as u64;
        if truncated {
            text.line(format!(
                "Showing the first {} of {total} features.",
                features.len()
            ));
        }
        Reply::new(
            &text,
            &FeatureListResult {
                features: views,
                total,
                truncated,
            },
        )
    }

    async fn get_feature_reply(&self, viewer: Viewer, args: GetFeatureArgs) -> AppResult<Reply> {
        let feature = self.services.feature(&viewer, &args.feature_id).await?;
        let ids = [feature.id];
        let (project, counts, spec) = futures::try_join!(
            self.services.find_project(feature.project_id),
            self.services.plan_counts_by_feature(&ids),
            self.spec_text(&feature.spec_key),
        )?;
        let view = feature_view(&feature, &project, &counts, Some(spec.clone()));
        let mut text = Text::headline(format!("✓ Feature: {}", feature.title));
        text.field("ID", feature.id)
            .field("Project", format!("{} ({})", project.name, project.id))
            .field("Version", format!("v{}", feature.current_version))
            .field("Plans", counts_text(&view.plan_counts))
            .field("Created", text_time(feature.created_at))
            .field("Updated", text_time(feature.updated_at));
        if let Some(description) = &feature.description {
            text.block("Description", description);
        }
        text.blank()
            .line("Specification Content:")
            .blank()
            .line(spec.trim_end());
        Reply::new(&text, &FeatureResult { feature: view })
    }

    async fn update_feature_reply(
        &self,
        viewer: Viewer,
        args: UpdateFeatureArgs,
    ) -> AppResult<Reply> {
        let update = FeatureUpdate {
            title: args.title,
            description: args.description,
            spec_content: Some(args.spec_content),
            new_version: args.new_version,
        };
        let feature = self
            .services
            .update_feature(&viewer, &args.feature_id, update)
            .await?;
        let project = self.services.find_project(feature.project_id).await?;
        let version = feature.current_version;
        let mut text = Text::headline(if args.new_version {
            format!("✓ Feature updated: version v{version} created!")
        } else {
            "✓ Feature updated successfully!".to_owned()
        });
        text.field("Feature", &feature.title)
            .field("ID", feature.id)
            .field(
                "Version",
                if args.new_version {
                    format!("v{version} (created)")
                } else {
                    format!("v{version} (amended)")
                },
            )
            .field("Updated", text_time(feature.updated_at))
            .blank()
            .line(if args.new_version {
                "The new version carries this specification; earlier versions keep theirs."
            } else {
                "The current version's specification was replaced; pass new_version: true to keep the old one as history."
            });
        let view = feature_view(&feature, &project, &HashMap::new(), None);
        Reply::new(&text, &FeatureResult { feature: view })
    }

    async fn list_feature_versions_reply(
        &self,
        viewer: Viewer,
        args: ListFeatureVersionsArgs,
    ) -> AppResult<Reply> {
        let feature = self.services.feature(&viewer, &args.feature_id).await?;
        // The newest page: the feature's version number tells how many in all.
        let versions = self
            .services
            .versions_of(feature.id, crate::service::pagination::MAX_PAGE_SIZE)
            .await?;
        let plan_ids: Vec<Uuid> = versions
            .iter()
            .filter_map(|version| version.implemented_by_plan_id)
            .collect();
        let people: Vec<Uuid> = versions
            .iter()
            .filter_map(|version| version.implemented_by)
            .collect();
        let (plans, related) = futures::try_join!(
            self.services.plans_by_ids(&plan_ids),
            Related::of_plans(&self.services, &[], &people),
        )?;
        let plans: HashMap<Uuid, plan::Model> =
            plans.into_iter().map(|plan| (plan.id, plan)).collect();
        let mut text = Text::headline(format!(
            "✓ Versions of {} ({}):",
            feature.title,
            versions.len()
        ));
        let mut views = Vec::with_capacity(versions.len());
        for version in &versions {
            let view = related.version_view(version, &plans)?;
            text.line(format!("v{}", version.version));
            match &view.implemented_by_plan {
                Some(plan) => text.line(format!("   Plan: {} ({})", plan.title, plan.id)),
                None if version.version == 1 => {
                    text.line("   Plan: none (the feature's first version)")
                }
                None => text.line("   Plan: none (created with update_feature)"),
            };
            if let Some(person) = &view.implemented_by {
                text.line(format!("   Implemented by: {}", person.email));
            }
            text.line(format!("   Created: {}", text_time(version.created_at)))
                .blank();
            views.push(view);
        }
        let result = VersionListResult {
            feature: FeatureRef {
                id: feature.id.to_string(),
                title: feature.title.clone(),
                current_version: feature.current_version,
            },
            versions: views,
        };
        Reply::new(&text, &result)
    }
}

fn feature_view(
    feature: &feature::Model,
    project: &project::Model,
    counts: &HashMap<Uuid, HashMap<PlanStatus, u64>>,
    spec_content: Option<String>,
) -> FeatureView {
    FeatureView {
        id: feature.id.to_string(),
        title: feature.title.clone(),
        description: feature.description.clone(),
        project: ProjectRef {
            id: project.id.to_string(),
            name: project.name.clone(),
        },
        current_version: feature.current_version,
        plan_counts: counts_by_name(counts.get(&feature.id)),
        created_at: rfc3339(feature.created_at),
        updated_at: rfc3339(feature.updated_at),
        spec_content,
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::input_schema;
    use super::*;

    /// Every argument type is an object schema, as MCP requires of an input
    /// schema, so `input` never falls back.
    #[test]
    fn every_argument_type_is_a_valid_input_schema() {
        assert!(input_schema::<CreateFeatureArgs>().is_ok());
        assert!(input_schema::<ListFeaturesArgs>().is_ok());
        assert!(input_schema::<GetFeatureArgs>().is_ok());
        assert!(input_schema::<UpdateFeatureArgs>().is_ok());
        assert!(input_schema::<ListFeatureVersionsArgs>().is_ok());
    }
}
