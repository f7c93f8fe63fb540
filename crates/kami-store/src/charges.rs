//! What an attempt charges when its channel cannot take the product's currency (issue 12
//! part 5): the product's own price in the channel's currency, scaled like the total, else
//! the shop's `[fx]` table. The arithmetic is `kami_core::fx`; this reads the product's
//! prices from the row the order's transaction already holds.

use kami_core::{Charge, Currency, FxTable, Money, OwnPrices};

use crate::db::Row;
use crate::error::{Result, StoreError};

/// The product's own prices from its row's `prices` column.
pub(crate) fn own_prices(product: &Row, own: Currency) -> Result<OwnPrices> {
    OwnPrices::parse(&product.get::<String>("prices")?, own)
        .map_err(|e| StoreError::Corrupt(format!("product prices: {e}")))
}

/// What a channel charging in `to` takes for an order of `total` whose list unit price is
/// `list`; `None` when it cannot be converted (no own price there and no rate, or it rounds
/// to nothing): that channel is skipped.
pub(crate) fn charge(
    fx: &FxTable,
    total: Money,
    list: Money,
    own: &OwnPrices,
    to: Currency,
) -> Option<Charge> {
    match fx.charge(total, list, own.get(to), to) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!("no charge in {to} for {total}: {e}");
            None
        }
    }
}
