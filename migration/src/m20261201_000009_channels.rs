//! Channels (SPEC §10): the indexes the Telegram and WhatsApp paths read by.
//!
//! - inbound messages by sender, to find a sender's lead (`broker, provider, channel_user_id`);
//! - inbound messages still `pending` (stored, not yet answered), for the stale-inbound sweeper;
//! - outbound messages by the provider's id of the sent message, for WhatsApp status callbacks;
//! - chat configs by WhatsApp `phone_number_id`, to find the broker of a Cloud API webhook.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000009_channels"
    }
}

const UP: &str = r#"
CREATE INDEX chat_messages_sender_idx ON chat_messages (broker_id, provider, channel_user_id, id DESC)
    WHERE direction = 'in';
CREATE INDEX chat_messages_pending_in_idx ON chat_messages (created_at)
    WHERE direction = 'in' AND status = 'pending';
CREATE INDEX chat_messages_pending_out_idx ON chat_messages (created_at)
    WHERE direction = 'out' AND status = 'pending';
CREATE INDEX chat_messages_provider_message_idx
    ON chat_messages (provider, (provider_metadata->>'provider_message_id'))
    WHERE direction = 'out' AND provider_metadata ? 'provider_message_id';
CREATE INDEX broker_chat_configs_wa_phone_idx
    ON broker_chat_configs ((provider_configs->'whatsapp'->>'phone_number_id'));
"#;

const DOWN: &str = r#"
DROP INDEX IF EXISTS chat_messages_sender_idx, chat_messages_pending_in_idx, chat_messages_pending_out_idx,
    chat_messages_provider_message_idx, broker_chat_configs_wa_phone_idx;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
