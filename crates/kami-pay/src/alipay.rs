//! alipay: being written.
