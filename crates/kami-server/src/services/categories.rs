//! The catalogue's groups as the seller manages them: list, create, rename (the group's
//! products follow), reposition or move one place, delete (its products stay, without a
//! group). The console's categories page and the JSON API both come here; every change is
//! audited by the store in the same commit.

use kami_store::{Actor, Category, CategoryOutcome, CategoryPatch, Direction};
use serde::Deserialize;

use super::products::{parse_category, parse_sort_order};
use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// `PATCH /api/v1/admin/categories/{name}`: either or both; absent keeps the value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryChanges {
    pub name: Option<String>,
    pub sort_order: Option<i64>,
}

/// A group's name: 1 to 60 characters, trimmed, no control characters.
pub fn parse_name(name: &str) -> ServiceResult<String> {
    let name = parse_category(name)?;
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "invalid_category",
            "a category name is 1 to 60 printable characters",
        ));
    }
    Ok(name)
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::not_found("category_not_found", format!("no category named {name:?}"))
}

fn outcome(name: &str, o: CategoryOutcome) -> ServiceResult<Category> {
    match o {
        CategoryOutcome::Done(c) => Ok(c),
        CategoryOutcome::NotFound | CategoryOutcome::Deleted { .. } => Err(not_found(name)),
        CategoryOutcome::NameTaken => Err(ServiceError::Conflict {
            code: "category_exists",
            message: "a category with this name already exists".into(),
        }),
        CategoryOutcome::AtEnd => Err(ServiceError::Conflict {
            code: "cannot_move",
            message: "the category is already at that end of the list".into(),
        }),
    }
}

/// Every group, in the storefront's order, with how many products each holds.
pub async fn list(state: &AppState) -> ServiceResult<Vec<Category>> {
    Ok(state.store.categories().await?)
}

/// A new group (`409 category_exists` if the name is taken); last unless `sort_order`.
pub async fn create(
    state: &AppState,
    name: &str,
    sort_order: Option<i64>,
    actor: &Actor,
) -> ServiceResult<Category> {
    let name = parse_name(name)?;
    let sort_order = sort_order.map(parse_sort_order).transpose()?;
    let o = state
        .store
        .create_category(&name, sort_order, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    outcome(&name, o)
}

/// Rename and/or reposition a group.
pub async fn update(
    state: &AppState,
    name: &str,
    changes: CategoryChanges,
    actor: &Actor,
) -> ServiceResult<Category> {
    let patch = CategoryPatch {
        name: changes.name.as_deref().map(parse_name).transpose()?,
        sort_order: changes.sort_order.map(parse_sort_order).transpose()?,
    };
    let o = state
        .store
        .update_category(name, patch, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    outcome(name, o)
}

/// Delete a group; returns how many products are now without one.
pub async fn delete(state: &AppState, name: &str, actor: &Actor) -> ServiceResult<i64> {
    let o = state
        .store
        .delete_category(name, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    match o {
        CategoryOutcome::Deleted { uncategorised } => Ok(uncategorised),
        other => outcome(name, other).map(|_| 0),
    }
}

/// Move a group one place up or down (`409 cannot_move` at the end of the list).
pub async fn move_one(
    state: &AppState,
    name: &str,
    dir: Direction,
    actor: &Actor,
) -> ServiceResult<Category> {
    let o = state
        .store
        .move_category(name, dir, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    outcome(name, o)
}
