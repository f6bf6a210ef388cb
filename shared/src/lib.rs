//! The customer service's one crate: domain operations, PostgreSQL access, auth, events and
//! the HTTP routers. Every function binary is a thin `main` over this.

pub mod app;
pub mod auth;
pub mod aws;
pub mod cache;
pub mod config;
pub mod credit;
pub mod customers;
pub mod db;
pub mod error;
pub mod events;
pub mod http;
pub mod input;
pub mod loyalty;
pub mod migrations;
pub mod money;
pub mod paging;
pub mod routes;
pub mod search;
pub mod segments;
pub mod telemetry;
mod text_enum;
