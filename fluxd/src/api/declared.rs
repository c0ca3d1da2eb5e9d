//! The routes desired states and schedules answer alike: `GET`, `PUT` and `DELETE` of
//! `/v1/states/{name}` and `/v1/schedules/{name}` ([`route`]), over a service of named,
//! versioned objects a tenant declares ([`Declared`]).
//!
//! Guarantees: reads need `ReadStates`, writes `ManageStates`; a `PUT` names the object of its
//! path and honours `If-Match`, then answers with the object as read back ([`written`]); a
//! `DELETE` honours `If-Match` and answers `{"deleted": name, "version": v}`.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use flux_core::auth::Permission;
use flux_core::model::{Millis, now_ms};
use flux_core::reconcile::Reconciler;
use flux_core::schedule::{ScheduleSpec, ScheduleView, Schedules};
use flux_core::state::{StateSpec, StateView};
use flux_core::store::{Expect, Version};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::extract::{ApiJson, Caller, Ctx, delete_precondition, precondition, same_name};
use super::reply::written;
use crate::error::ApiResult;
use crate::state::AppState;

/// A service of named, versioned objects a tenant declares.
pub(super) trait Declared: Send + Sync + 'static {
    /// What one object is called in messages.
    const KIND: &'static str;
    type Spec: DeserializeOwned + Send + 'static;
    type View: Serialize + Send;
    fn of(st: &AppState) -> &Self;
    fn name(spec: &Self::Spec) -> &str;
    fn version(view: &Self::View) -> Version;
    /// Writes `spec` if `expect` holds; true if it created the object.
    fn write(
        &self,
        tenant: &str,
        by: &str,
        spec: Self::Spec,
        expect: Expect,
        now: Millis,
    ) -> impl Future<Output = ApiResult<bool>> + Send;
    fn read(&self, tenant: &str, name: &str) -> impl Future<Output = ApiResult<Self::View>> + Send;
    /// Deletes the object if `expect` holds; the version it deleted.
    fn remove(
        &self,
        tenant: &str,
        name: &str,
        expect: Expect,
    ) -> impl Future<Output = ApiResult<Version>> + Send;
}

/// Implements [`Declared`] for a flux-core service whose `put`, `get` and `delete` have the
/// shape of the trait's.
macro_rules! declared {
    ($service:ty, $kind:literal, $spec:ty, $view:ty, $field:ident) => {
        impl Declared for $service {
            const KIND: &'static str = $kind;
            type Spec = $spec;
            type View = $view;
            fn of(st: &AppState) -> &Self {
                &st.$field
            }
            fn name(spec: &$spec) -> &str {
                &spec.name
            }
            fn version(view: &$view) -> Version {
                view.version
            }
            async fn write(
                &self,
                tenant: &str,
                by: &str,
                spec: $spec,
                expect: Expect,
                now: Millis,
            ) -> ApiResult<bool> {
                Ok(self.put(tenant, by, spec, expect, now).await?.1)
            }
            async fn read(&self, tenant: &str, name: &str) -> ApiResult<$view> {
                Ok(self.get(tenant, name).await?)
            }
            async fn remove(&self, tenant: &str, name: &str, expect: Expect) -> ApiResult<Version> {
                Ok(self.delete(tenant, name, expect).await?)
            }
        }
    };
}

declared!(Reconciler, "state", StateSpec, StateView, states);
declared!(Schedules, "schedule", ScheduleSpec, ScheduleView, schedules);

/// The route of `/v1/states/{name}` or `/v1/schedules/{name}`: `GET`, `PUT` and `DELETE`.
pub(super) fn route<S: Declared>() -> MethodRouter<Arc<AppState>> {
    get(get_one::<S>).put(put_one::<S>).delete(delete_one::<S>)
}

/// Writes `spec` if `expect` holds and answers with the object as read back.
pub(super) async fn store<S: Declared>(
    st: &AppState,
    caller: &Caller,
    spec: S::Spec,
    expect: Expect,
) -> ApiResult<Response> {
    let name = S::name(&spec).to_string();
    let service = S::of(st);
    let created = service
        .write(caller.tenant(), &caller.0.sub, spec, expect, now_ms())
        .await?;
    let view = service.read(caller.tenant(), &name).await?;
    Ok(written(created, S::version(&view), view))
}

async fn get_one<S: Declared>(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Json<S::View>> {
    caller.require(Permission::ReadStates)?;
    Ok(Json(S::of(&st).read(caller.tenant(), &name).await?))
}

async fn put_one<S: Declared>(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(spec): ApiJson<S::Spec>,
) -> ApiResult<Response> {
    caller.require(Permission::ManageStates)?;
    same_name(S::KIND, S::name(&spec), &name)?;
    let expect = precondition(&headers)?;
    store::<S>(&st, &caller, spec, expect).await
}

async fn delete_one<S: Declared>(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Permission::ManageStates)?;
    let expect = delete_precondition(&headers)?;
    let v = S::of(&st).remove(caller.tenant(), &name, expect).await?;
    Ok(Json(json!({"deleted": name, "version": v})))
}
