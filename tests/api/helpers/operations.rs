//! GraphQL documents the tests share; each test keeps its own one-off queries.

pub const CREATE_PROJECT: &str = "mutation($name: String!) { createProject(name: $name) { id } }";
pub const CREATE_FEATURE: &str = "mutation($projectId: ID!, $title: String!, $spec: String!) {
    createFeature(projectId: $projectId, title: $title, specContent: $spec) { id currentVersion } }";
pub const CREATE_PLAN: &str = "mutation($featureId: ID!, $title: String!, $spec: String!, $status: PlanStatus) {
    createPlan(featureId: $featureId, title: $title, specContent: $spec, status: $status) { id status } }";
pub const ADD_MEMBER: &str = "mutation($projectId: ID!, $email: String!, $role: ProjectRole) {
    addProjectMember(projectId: $projectId, email: $email, role: $role) { role } }";
pub const REMOVE_MEMBER: &str = "mutation($projectId: ID!, $userId: ID!) {
    removeProjectMember(projectId: $projectId, userId: $userId) }";
pub const SET_STATUS: &str = "mutation($planId: ID!, $status: PlanStatus!) {
    setPlanStatus(planId: $planId, status: $status) { id status claimedBy { email } implementedVersion workArtifacts } }";
pub const CLAIM: &str = "mutation($planId: ID!) { claimPlan(planId: $planId) {
    id status claimedBy { email } claimedAt lastActivityAt } }";
pub const RELEASE: &str = "mutation($planId: ID!) { releasePlan(planId: $planId) {
    id status claimedBy { email } claimedAt } }";
pub const UPDATE_PLAN: &str =
    "mutation($planId: ID!, $spec: String!) { updatePlan(planId: $planId, specContent: $spec) {
    id status spec lastActivityAt updatedAt } }";
pub const SUBMIT: &str = "mutation($planId: ID!, $artifacts: String!, $status: SubmitStatus!) {
    submitWork(planId: $planId, artifactsMarkdown: $artifacts, status: $status) {
      plan { id status claimedBy { email } submittedBy { email } workArtifacts implementedVersion lastActivityAt }
      featureVersion { version implementedBy { email } implementedByPlan { id } } } }";
pub const GET_PLAN: &str = "query($id: ID!) { plan(id: $id) {
    id title status spec workArtifacts claimedBy { email } claimedAt lastActivityAt updatedAt
    submittedBy { email } implementedVersion feature { id title currentVersion } project { name }
    events { kind fromStatus toStatus actor { email } at } } }";
