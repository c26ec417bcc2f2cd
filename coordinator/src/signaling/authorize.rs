//! Join path: session -> **authorize** -> handler. The checks a `join` or a
//! `resume` passes before anything is done for it: names, the token (or
//! resume token) and its room. Nothing here claims a room in Redis, takes a
//! queue place or calls a node: the session calls [`authorize_text`] on a
//! client's first message before it claims or relays the room, and the
//! handler calls [`authorize`] / [`authorize_resume`] again for the claims
//! it needs.

use throng_proto::names;

use super::SessionDeps;
use crate::auth::TokenError;
use crate::protocol::{ClientMessage, ErrorCode};
use crate::room::RoomError;

/// A refusal with `code`.
pub(super) fn bad(code: ErrorCode, message: &str) -> RoomError {
    RoomError::new(code, message)
}

/// The checks a join passes before anything is done for it (no Redis
/// claim, no queue place, no node call): the names, the token, its room.
pub fn authorize(
    deps: &SessionDeps,
    room: &str,
    display_name: &str,
    token: &str,
) -> Result<crate::auth::Claims, RoomError> {
    if !names::valid(room, names::MAX_ID) || !names::valid(display_name, names::MAX_DISPLAY_NAME) {
        return Err(bad(
            ErrorCode::BadRequest,
            "room and displayName must be 1 to 128 / 64 printable characters",
        ));
    }
    let claims = match deps.tokens.verify(token) {
        Ok(c) => c,
        Err(e @ (TokenError::Expired | TokenError::NotYetValid | TokenError::Audience)) => {
            return Err(bad(ErrorCode::Unauthorized, &e.to_string()))
        }
        Err(_) => return Err(bad(ErrorCode::Unauthorized, "invalid token")),
    };
    if claims.rsm.is_some() {
        return Err(bad(
            ErrorCode::Unauthorized,
            "a resume token is not a join token",
        ));
    }
    if claims.room != room {
        return Err(bad(
            ErrorCode::Unauthorized,
            "the token is for another room",
        ));
    }
    Ok(claims)
}

/// The checks a `resume` passes before anything is done for it: a resume
/// token (minted by a coordinator of this cluster) for this room. Returns
/// the participant, its session's resume nonce and whether it may publish.
pub fn authorize_resume(
    deps: &SessionDeps,
    room: &str,
    resume_token: &str,
) -> Result<(String, String, bool), RoomError> {
    if !names::valid(room, names::MAX_ID) {
        return Err(bad(
            ErrorCode::BadRequest,
            "room must be 1 to 128 printable characters",
        ));
    }
    let claims = match deps.tokens.verify(resume_token) {
        Ok(c) => c,
        Err(TokenError::Expired) => {
            return Err(bad(ErrorCode::Unauthorized, "resume token expired"))
        }
        Err(_) => return Err(bad(ErrorCode::Unauthorized, "invalid resume token")),
    };
    match claims.rsm {
        Some(nonce) if claims.room == room => Ok((claims.sub, nonce, claims.publish)),
        Some(_) => Err(bad(
            ErrorCode::Unauthorized,
            "the resume token is for another room",
        )),
        None => Err(bad(
            ErrorCode::Unauthorized,
            "a join token is not a resume token",
        )),
    }
}

/// [`authorize`] or [`authorize_resume`] on a client's raw `join` or
/// `resume` (the session asks before it claims the room in Redis or relays
/// the message to the room's owner).
pub fn authorize_text(deps: &SessionDeps, text: &str) -> Result<(), RoomError> {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Join {
            room,
            display_name,
            token,
            ..
        }) => authorize(deps, &room, &display_name, &token).map(|_| ()),
        Ok(ClientMessage::Resume {
            room, resume_token, ..
        }) => authorize_resume(deps, &room, &resume_token).map(|_| ()),
        Ok(_) => Ok(()),
        Err(e) => Err(bad(
            ErrorCode::BadRequest,
            &format!("cannot understand message: {e}"),
        )),
    }
}
