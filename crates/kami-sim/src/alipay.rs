//! alipay gateway simulator: being written.
