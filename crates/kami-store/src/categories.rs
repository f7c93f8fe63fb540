//! The catalogue's groups, in the seller's order. A product names its group by name
//! (`products.category`, '' = none); naming a group that does not exist yet creates it at the
//! end. Renaming moves the group's products with it; deleting leaves them without a group.
//! Every change writes its audit row, with before and after, in the transaction that makes it.

use kami_core::Millis;
use serde_json::json;

use crate::audit;
use crate::db::Tx;
use crate::error::Result;
use crate::model::Actor;
use crate::{params, Store};

/// Positions written by a move: 10, 20, 30... (room for an API caller's own numbers between).
pub const STEP: i64 = 10;

/// A group of the catalogue as the seller manages it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    /// Position in the catalogue, lower first.
    pub sort_order: i64,
    /// Products in it, hidden ones too.
    pub products: i64,
}

/// A change to a group: `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct CategoryPatch {
    pub name: Option<String>,
    pub sort_order: Option<i64>,
}

/// What a change to a group did, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategoryOutcome {
    Done(Category),
    /// Deleted; this many products are now without a group.
    Deleted {
        uncategorised: i64,
    },
    NotFound,
    /// Another group has this name.
    NameTaken,
    /// A move with nowhere to go (already first or last).
    AtEnd,
}

/// Which way a move goes in its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

fn get(tx: &mut dyn Tx, name: &str) -> Result<Option<Category>> {
    tx.query_opt(
        "SELECT c.name, c.sort_order, \
           (SELECT COUNT(*) FROM products p WHERE p.category = c.name) AS products \
         FROM categories c WHERE c.name = $1",
        params![name],
    )?
    .map(|r| {
        Ok(Category {
            name: r.get("name")?,
            sort_order: r.get("sort_order")?,
            products: r.get("products")?,
        })
    })
    .transpose()
}

fn list(tx: &mut dyn Tx) -> Result<Vec<Category>> {
    tx.query(
        "SELECT c.name, c.sort_order, \
           (SELECT COUNT(*) FROM products p WHERE p.category = c.name) AS products \
         FROM categories c ORDER BY c.sort_order, c.id",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(Category {
            name: r.get("name")?,
            sort_order: r.get("sort_order")?,
            products: r.get("products")?,
        })
    })
    .collect()
}

/// Make sure the group `name` exists (a product names it): a new one goes last. '' is no
/// group. True when it was created.
pub(crate) fn ensure(tx: &mut dyn Tx, name: &str, now: Millis) -> Result<bool> {
    if name.is_empty() {
        return Ok(false);
    }
    if tx
        .query_opt("SELECT id FROM categories WHERE name = $1", params![name])?
        .is_some()
    {
        return Ok(false);
    }
    let last: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(sort_order), 0) AS last FROM categories",
            &[],
        )?
        .get("last")?;
    let n = tx.exec(
        "INSERT INTO categories (name, sort_order, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
        params![name, last.saturating_add(STEP), now],
    )?;
    Ok(n == 1)
}

fn create(
    tx: &mut dyn Tx,
    name: &str,
    sort_order: Option<i64>,
    actor: &Actor,
    now: Millis,
) -> Result<CategoryOutcome> {
    if !ensure(tx, name, now)? {
        return Ok(CategoryOutcome::NameTaken);
    }
    if let Some(n) = sort_order {
        tx.exec(
            "UPDATE categories SET sort_order = $2 WHERE name = $1",
            params![name, n],
        )?;
    }
    let Some(c) = get(tx, name)? else {
        return Ok(CategoryOutcome::NotFound);
    };
    let entry = actor.entry(
        "category.create",
        format!("category:{name}"),
        None,
        Some(json!({"name": c.name, "sort_order": c.sort_order})),
    );
    audit::record(tx, &entry, now)?;
    Ok(CategoryOutcome::Done(c))
}

/// The category `name`, locked for the rest of the transaction: its id and sort order.
fn lock(tx: &mut dyn Tx, name: &str) -> Result<Option<(i64, i64)>> {
    tx.query_opt(
        "SELECT id, sort_order FROM categories WHERE name = $1 FOR UPDATE",
        params![name],
    )?
    .map(|r| Ok((r.get("id")?, r.get("sort_order")?)))
    .transpose()
}

fn update(
    tx: &mut dyn Tx,
    name: &str,
    patch: &CategoryPatch,
    actor: &Actor,
    now: Millis,
) -> Result<CategoryOutcome> {
    let Some((id, old_sort)) = lock(tx, name)? else {
        return Ok(CategoryOutcome::NotFound);
    };
    let new_name = patch.name.clone().unwrap_or_else(|| name.to_owned());
    let new_sort = patch.sort_order.unwrap_or(old_sort);
    let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
    if new_name != name {
        let taken = tx
            .query_opt(
                "SELECT id FROM categories WHERE name = $1",
                params![new_name.as_str()],
            )?
            .is_some();
        if taken {
            return Ok(CategoryOutcome::NameTaken);
        }
        tx.exec(
            "UPDATE categories SET name = $2 WHERE id = $1",
            params![id, new_name.as_str()],
        )?;
        let moved = tx.exec(
            "UPDATE products SET category = $2 WHERE category = $1",
            params![name, new_name.as_str()],
        )?;
        before.insert("name".into(), json!(name));
        after.insert("name".into(), json!(new_name));
        after.insert("products".into(), json!(moved));
    }
    if new_sort != old_sort {
        tx.exec(
            "UPDATE categories SET sort_order = $2 WHERE id = $1",
            params![id, new_sort],
        )?;
        before.insert("sort_order".into(), json!(old_sort));
        after.insert("sort_order".into(), json!(new_sort));
    }
    if !before.is_empty() {
        let entry = actor.entry(
            "category.update",
            format!("category:{name}"),
            Some(before.into()),
            Some(after.into()),
        );
        audit::record(tx, &entry, now)?;
    }
    Ok(get(tx, &new_name)?.map_or(CategoryOutcome::NotFound, CategoryOutcome::Done))
}

fn delete(tx: &mut dyn Tx, name: &str, actor: &Actor, now: Millis) -> Result<CategoryOutcome> {
    let Some((id, sort_order)) = lock(tx, name)? else {
        return Ok(CategoryOutcome::NotFound);
    };
    let slugs: Vec<String> = tx
        .query(
            "SELECT slug FROM products WHERE category = $1 ORDER BY sort_order, id",
            params![name],
        )?
        .iter()
        .map(|r| r.get("slug"))
        .collect::<Result<_>>()?;
    tx.exec(
        "UPDATE products SET category = '' WHERE category = $1",
        params![name],
    )?;
    tx.exec("DELETE FROM categories WHERE id = $1", params![id])?;
    let entry = actor.entry(
        "category.delete",
        format!("category:{name}"),
        Some(json!({"name": name, "sort_order": sort_order, "products": slugs})),
        None,
    );
    audit::record(tx, &entry, now)?;
    Ok(CategoryOutcome::Deleted {
        uncategorised: i64::try_from(slugs.len()).unwrap_or(i64::MAX),
    })
}

/// Swap `ids[at]` with its neighbour in `dir`, then number the list `STEP, 2·STEP, …`:
/// the new positions of the rows whose position changes, by index. `None`: nowhere to go.
pub(crate) fn moved_positions(
    current: &[i64],
    at: usize,
    dir: Direction,
) -> Option<Vec<(usize, i64)>> {
    let other = match dir {
        Direction::Up => at.checked_sub(1)?,
        Direction::Down => Some(at + 1).filter(|i| *i < current.len())?,
    };
    let mut order: Vec<usize> = (0..current.len()).collect();
    order.swap(at, other);
    let mut changes = Vec::new();
    for (pos, idx) in order.into_iter().enumerate() {
        let want = (i64::try_from(pos).unwrap_or(i64::MAX - 1) + 1).saturating_mul(STEP);
        if current.get(idx) != Some(&want) {
            changes.push((idx, want));
        }
    }
    Some(changes)
}

fn move_one(
    tx: &mut dyn Tx,
    name: &str,
    dir: Direction,
    actor: &Actor,
    now: Millis,
) -> Result<CategoryOutcome> {
    let rows = tx.query(
        "SELECT id, name, sort_order FROM categories ORDER BY sort_order, id FOR UPDATE",
        &[],
    )?;
    let mut list: Vec<(i64, String, i64)> = Vec::with_capacity(rows.len());
    for r in &rows {
        list.push((r.get("id")?, r.get("name")?, r.get("sort_order")?));
    }
    let Some(at) = list.iter().position(|(_, n, _)| n == name) else {
        return Ok(CategoryOutcome::NotFound);
    };
    let sorts: Vec<i64> = list.iter().map(|c| c.2).collect();
    let Some(changes) = moved_positions(&sorts, at, dir) else {
        return Ok(CategoryOutcome::AtEnd);
    };
    let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
    for (idx, want) in changes {
        let Some((id, n, old)) = list.get(idx) else {
            continue;
        };
        tx.exec(
            "UPDATE categories SET sort_order = $2 WHERE id = $1",
            params![*id, want],
        )?;
        before.insert(n.clone(), json!(old));
        after.insert(n.clone(), json!(want));
    }
    let entry = actor.entry(
        "category.move",
        format!("category:{name}"),
        Some(json!({ "sort_order": before })),
        Some(json!({ "sort_order": after })),
    );
    audit::record(tx, &entry, now)?;
    Ok(get(tx, name)?.map_or(CategoryOutcome::NotFound, CategoryOutcome::Done))
}

impl Store {
    /// Every group of the catalogue, in order, with how many products each holds.
    pub async fn categories(&self) -> Result<Vec<Category>> {
        self.read(list).await
    }

    /// A new group (`sort_order`: where; default last), audited.
    pub async fn create_category(
        &self,
        name: &str,
        sort_order: Option<i64>,
        actor: &Actor,
        now: Millis,
    ) -> Result<CategoryOutcome> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.write(move |tx| create(tx, &name, sort_order, &actor, now))
            .await
    }

    /// Rename (the group's products follow) or reposition a group, audited.
    pub async fn update_category(
        &self,
        name: &str,
        patch: CategoryPatch,
        actor: &Actor,
        now: Millis,
    ) -> Result<CategoryOutcome> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.write(move |tx| update(tx, &name, &patch, &actor, now))
            .await
    }

    /// Delete a group; its products stay, without a group. Audited with their slugs.
    pub async fn delete_category(
        &self,
        name: &str,
        actor: &Actor,
        now: Millis,
    ) -> Result<CategoryOutcome> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.write(move |tx| delete(tx, &name, &actor, now)).await
    }

    /// Move a group one place up or down (the list is numbered again), audited.
    pub async fn move_category(
        &self,
        name: &str,
        dir: Direction,
        actor: &Actor,
        now: Millis,
    ) -> Result<CategoryOutcome> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.write(move |tx| move_one(tx, &name, dir, &actor, now))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::{moved_positions, Direction};

    #[test]
    fn a_move_swaps_neighbours_and_numbers_the_list() {
        // All at 0 (the default): a swap alone would change nothing.
        assert_eq!(
            moved_positions(&[0, 0, 0], 2, Direction::Up),
            Some(vec![(0, 10), (2, 20), (1, 30)])
        );
        assert_eq!(
            moved_positions(&[10, 20, 30], 0, Direction::Down),
            Some(vec![(1, 10), (0, 20)])
        );
        assert_eq!(moved_positions(&[10, 20], 0, Direction::Up), None);
        assert_eq!(moved_positions(&[10, 20], 1, Direction::Down), None);
        assert_eq!(moved_positions(&[], 0, Direction::Down), None);
    }
}
