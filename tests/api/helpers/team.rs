//! Users and a ready-made team: a project with an owner, a member, a viewer
//! and an outsider, and plans brought to any status through the real workflow.

use serde_json::{Value, json};

use super::{ADD_MEMBER, CLAIM, CREATE_PLAN, Client, SET_STATUS, SUBMIT, Server, UPDATE_PLAN};

/// A project with an owner, a member ("worker") and a viewer, and one feature.
pub struct Team {
    pub owner: Client,
    pub worker: Client,
    pub viewer: Client,
    pub outsider: Client,
    pub project: String,
    pub feature: String,
}

impl Team {
    pub async fn new(server: &Server) -> Team {
        let owner = server.user("owner@example.com").await;
        let worker = server.user("worker@example.com").await;
        let viewer = server.user("viewer@example.com").await;
        let outsider = server.user("outsider@example.com").await;
        let project = owner.create_project("Task Manager").await;
        for (email, role) in [
            ("worker@example.com", "MEMBER"),
            ("viewer@example.com", "VIEWER"),
        ] {
            owner
                .ok(
                    ADD_MEMBER,
                    json!({ "projectId": project, "email": email, "role": role }),
                )
                .await;
        }
        let feature = owner
            .create_feature(
                &project,
                "User Authentication",
                "# Auth
Users sign in.",
            )
            .await;
        Team {
            owner,
            worker,
            viewer,
            outsider,
            project,
            feature,
        }
    }

    /// The same team and project, talking to `server` (another instance on
    /// the same database, or the server after a restart).
    pub fn on(&self, server: &Server) -> Team {
        Team {
            owner: server.as_client(&self.owner),
            worker: server.as_client(&self.worker),
            viewer: server.as_client(&self.viewer),
            outsider: server.as_client(&self.outsider),
            project: self.project.clone(),
            feature: self.feature.clone(),
        }
    }

    /// A new user, added to the team's project as a member.
    pub async fn new_member(&self, server: &Server, email: &str) -> Client {
        let member = server.user(email).await;
        let vars = json!({ "projectId": self.project, "email": email });
        self.owner.ok(ADD_MEMBER, vars).await;
        member
    }

    /// A feature in a project of the outsider's own, outside the team's.
    pub async fn outsiders_own_feature(&self) -> String {
        let project = self.outsider.create_project("Mine").await;
        self.outsider.create_feature(&project, "Mine", "# m").await
    }

    /// A plan of the team's feature, created by the owner in `status`.
    pub async fn plan(&self, title: &str, status: &str) -> String {
        self.plan_of(&self.feature, title, status).await
    }

    pub async fn plan_of(&self, feature: &str, title: &str, status: &str) -> String {
        let spec = format!("# {title}\n\n## Steps\n1. Build it");
        self.owner
            .ok(
                CREATE_PLAN,
                json!({ "featureId": feature, "title": title, "spec": spec, "status": status }),
            )
            .await["createPlan"]["id"]
            .as_str()
            .expect("plan id")
            .to_owned()
    }

    /// A plan brought to `status` through the real workflow, claimed by the worker.
    pub async fn plan_in(&self, title: &str, status: &str) -> String {
        let plan = self
            .plan(title, if status == "DRAFT" { "DRAFT" } else { "READY" })
            .await;
        let vars = json!({ "planId": plan });
        let with = |extra: Value| {
            let mut vars = vars.clone();
            vars.as_object_mut()
                .expect("object")
                .extend(extra.as_object().expect("object").clone());
            vars
        };
        match status {
            "DRAFT" | "READY" => {}
            "CLAIMED" => {
                self.worker.ok(CLAIM, vars.clone()).await;
            }
            "IN_PROGRESS" => {
                self.worker.ok(CLAIM, vars.clone()).await;
                self.worker
                    .ok(UPDATE_PLAN, with(json!({ "spec": "progress" })))
                    .await;
            }
            "REVIEW" | "COMPLETED" | "FAILED" => {
                self.worker.ok(CLAIM, vars.clone()).await;
                let target = if status == "COMPLETED" {
                    "COMPLETED"
                } else {
                    "REVIEW"
                };
                self.worker
                    .ok(
                        SUBMIT,
                        with(json!({ "artifacts": "PR #1", "status": target })),
                    )
                    .await;
                if status == "FAILED" {
                    self.owner
                        .ok(SET_STATUS, with(json!({ "status": "FAILED" })))
                        .await;
                }
            }
            other => panic!("plan_in cannot reach {other} without the sweeper"),
        }
        plan
    }
}

impl Server {
    /// A new user (created by the admin) and a client holding their key.
    pub async fn user(&self, email: &str) -> Client {
        let created = self
            .admin()
            .ok(
                "mutation($email: String!) { createUser(email: $email) { secret } }",
                json!({ "email": email }),
            )
            .await;
        self.client(created["createUser"]["secret"].as_str().expect("secret"))
    }
}
