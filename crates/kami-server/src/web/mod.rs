//! The storefront: server-rendered pages (DESIGN 4.3 "Pages"), their theme, languages and
//! assets. Pages read and write through the same store and channels as the JSON API.

pub mod i18n;
pub mod theme;

pub use i18n::Locale;
pub use theme::{Theme, ThemeError};
