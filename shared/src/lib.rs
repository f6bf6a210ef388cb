//! The customer service's one crate: domain rules, PostgreSQL access, auth and HTTP routers.
//! Every function binary is a thin `main` over this.

pub mod auth;
pub mod aws;
pub mod config;
pub mod credit;
pub mod customers;
pub mod db;
pub mod error;
pub mod events;
pub mod http;
pub mod loyalty;
pub mod migrations;
pub mod money;
pub mod search;
pub mod segments;
pub mod telemetry;
mod text_enum;
