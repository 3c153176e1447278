//! What commands print: [`deploy`] (table, JSON, the alert and the per-node lines for `deploy`,
//! `sync` and `watch`) and [`status`] (table, JSON, InfluxDB, Prometheus; [`nagios`] for the plugin format). Reports read the
//! engines' typed rows; nothing here decides by reading text back.

pub mod auth;
pub mod deploy;
pub mod expiry;
pub mod nagios;
pub mod nodes;
pub mod receipts;
pub mod status;
pub mod status_model;
