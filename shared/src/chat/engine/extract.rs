//! WIP
#![allow(dead_code)]
mod contact;
mod gazetteer;
mod tokens;
