//! Projects and their members.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set,
};
use uuid::Uuid;

use super::{Services, Viewer, now, parse_id};
use crate::error::{AppError, AppResult, Argument};
use crate::workflow::{ReviewPolicy, Role};
use entity::{project, project_member, user};

impl Services {
    /// Any user may start a project and becomes its owner.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_project(
        &self,
        viewer: &Viewer,
        name: &str,
        description: Option<String>,
    ) -> AppResult<project::Model> {
        let name = self.validate_title(Argument::Name, name)?;
        let description = self.validate_description(description)?;
        let at = now();
        let txn = self.begin_write().await?;
        let project = project::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name),
            description: Set(description),
            created_by: Set(viewer.id()),
            created_at: Set(at),
            updated_at: Set(at),
            review_policy: Set(ReviewPolicy::default()),
        }
        .insert(&*txn)
        .await?;
        project_member::ActiveModel {
            project_id: Set(project.id),
            user_id: Set(viewer.id()),
            role: Set(Role::Owner),
            created_at: Set(at),
        }
        .insert(&*txn)
        .await?;
        txn.commit_access_change(&self.events, viewer.id()).await?;
        Ok(project)
    }

    /// Projects the viewer belongs to, oldest first.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn projects_of(&self, viewer: &Viewer) -> AppResult<Vec<project::Model>> {
        Ok(project::Entity::find()
            .filter(project::Column::Id.in_subquery(member_projects(viewer.id())))
            .order_by_asc(project::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// A project by id, for members only.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn project(&self, viewer: &Viewer, id: &str) -> AppResult<project::Model> {
        let id = parse_id(Argument::ProjectId, id)?;
        let project = self.find_project(id).await?;
        self.require_member(viewer, project.id).await?;
        Ok(project)
    }

    pub async fn find_project(&self, id: Uuid) -> AppResult<project::Model> {
        project::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("No project with id {id}")))
    }

    /// The members of each project, oldest membership first, in one query.
    pub async fn members_of(
        &self,
        projects: &[Uuid],
    ) -> AppResult<HashMap<Uuid, Vec<project_member::Model>>> {
        let members = project_member::Entity::find()
            .filter(project_member::Column::ProjectId.is_in(projects.iter().copied()))
            .order_by_asc(project_member::Column::CreatedAt)
            .order_by_asc(project_member::Column::UserId)
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<Uuid, Vec<project_member::Model>> = HashMap::new();
        for member in members {
            grouped.entry(member.project_id).or_default().push(member);
        }
        Ok(grouped)
    }

    /// `user`'s role in each project they belong to (of `projects`, when
    /// given), in one query: a list of projects shows each one's role
    /// without a query per row.
    pub async fn roles_in(
        &self,
        user: Uuid,
        projects: Option<&[Uuid]>,
    ) -> AppResult<HashMap<Uuid, Role>> {
        let mut memberships =
            project_member::Entity::find().filter(project_member::Column::UserId.eq(user));
        if let Some(projects) = projects {
            memberships = memberships
                .filter(project_member::Column::ProjectId.is_in(projects.iter().copied()));
        }
        let memberships = memberships.all(&self.db).await?;
        Ok(memberships
            .into_iter()
            .map(|member| (member.project_id, member.role))
            .collect())
    }

    /// Owners set who may approve work in REVIEW (`workflow::may_approve`);
    /// it applies from the next approval on, work already in REVIEW included.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn set_review_policy(
        &self,
        viewer: &Viewer,
        project_id: &str,
        policy: ReviewPolicy,
    ) -> AppResult<project::Model> {
        let project = self.project(viewer, project_id).await?;
        self.require_owner(viewer, project.id, "set the review policy")
            .await?;
        if project.review_policy == policy {
            return Ok(project);
        }
        let txn = self.begin_write().await?;
        let mut active: project::ActiveModel = project.into();
        active.review_policy = Set(policy);
        active.updated_at = Set(now());
        let project = active.update(&*txn).await?;
        txn.commit().await?;
        Ok(project)
    }

    /// Owners add members by email, or change an existing member's role.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn add_project_member(
        &self,
        viewer: &Viewer,
        project_id: &str,
        email: &str,
        role: Role,
    ) -> AppResult<project_member::Model> {
        let project = self.project(viewer, project_id).await?;
        self.require_owner(viewer, project.id, "manage members")
            .await?;
        let user = self.user_by_email(email).await?.ok_or_else(|| {
            AppError::NotFound(format!(
                "No user with email {}; an admin can create one with createUser",
                email.trim()
            ))
        })?;
        let txn = self.begin_write().await?;
        let existing = project_member::Entity::find_by_id((project.id, user.id))
            .one(&*txn)
            .await?;
        let member = match existing {
            Some(member) if member.role == role => member,
            Some(member) => {
                if member.role == Role::Owner {
                    ensure_another_owner(&txn, project.id, user.id).await?;
                }
                let mut active: project_member::ActiveModel = member.into();
                active.role = Set(role);
                active.update(&*txn).await?
            }
            None => {
                project_member::ActiveModel {
                    project_id: Set(project.id),
                    user_id: Set(user.id),
                    role: Set(role),
                    created_at: Set(now()),
                }
                .insert(&*txn)
                .await?
            }
        };
        txn.commit_access_change(&self.events, user.id).await?;
        Ok(member)
    }

    /// Owners remove anyone; members may remove themselves. A project never
    /// loses its last owner.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn remove_project_member(
        &self,
        viewer: &Viewer,
        project_id: &str,
        user_id: &str,
    ) -> AppResult<bool> {
        let project = self.project(viewer, project_id).await?;
        let user_id = parse_id(Argument::UserId, user_id)?;
        if user_id != viewer.id() {
            self.require_owner(viewer, project.id, "manage members")
                .await?;
        }
        let txn = self.begin_write().await?;
        let member = project_member::Entity::find_by_id((project.id, user_id))
            .one(&*txn)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(format!("User {user_id} is not a member of this project"))
            })?;
        if member.role == Role::Owner {
            ensure_another_owner(&txn, project.id, user_id).await?;
        }
        project_member::Entity::delete_by_id((project.id, user_id))
            .exec(&*txn)
            .await?;
        txn.commit_access_change(&self.events, user_id).await?;
        Ok(true)
    }

    /// Refuses anyone but an owner, saying they cannot do `what`.
    async fn require_owner(&self, viewer: &Viewer, project: Uuid, what: &str) -> AppResult<()> {
        match self.require_member(viewer, project).await? {
            Role::Owner => Ok(()),
            _ => Err(AppError::Forbidden(format!(
                "Only project owners can {what}"
            ))),
        }
    }

    pub async fn users_by_ids(&self, ids: &[Uuid]) -> AppResult<Vec<user::Model>> {
        Ok(user::Entity::find()
            .filter(user::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?)
    }

    pub async fn projects_by_ids(&self, ids: &[Uuid]) -> AppResult<Vec<project::Model>> {
        Ok(project::Entity::find()
            .filter(project::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?)
    }
}

/// `SELECT project_id FROM project_members WHERE user_id = ?`, the membership
/// filter every list applies.
pub fn member_projects(user: Uuid) -> sea_orm::sea_query::SelectStatement {
    project_member::Entity::find()
        .select_only()
        .column(project_member::Column::ProjectId)
        .filter(project_member::Column::UserId.eq(user))
        .into_query()
}

async fn ensure_another_owner(
    txn: &super::WriteTransaction,
    project: Uuid,
    leaving: Uuid,
) -> AppResult<()> {
    let other_owners = project_member::Entity::find()
        .filter(project_member::Column::ProjectId.eq(project))
        .filter(project_member::Column::Role.eq(Role::Owner))
        .filter(project_member::Column::UserId.ne(leaving))
        .count(&**txn)
        .await?;
    if other_owners == 0 {
        return Err(AppError::Conflict(
            "A project needs at least one owner; make someone else an owner first".into(),
        ));
    }
    Ok(())
}
