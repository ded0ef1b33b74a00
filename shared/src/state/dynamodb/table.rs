//! Creating the table (tests and local stacks; in AWS the SAM template owns it).

use super::DynamoStore;
use super::keys::*;
use crate::state::StateError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};

impl DynamoStore {
    /// Creates the table (on-demand, TTL on `expire_at`) unless it exists.
    /// For tests and local stacks; in AWS the SAM template owns the table.
    pub async fn create_table(&self) -> Result<(), StateError> {
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let attr = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(PK, KeyType::Hash).map_err(|e| self.fail("CreateTable", &e))?)
            .key_schema(key(SK, KeyType::Range).map_err(|e| self.fail("CreateTable", &e))?)
            .attribute_definitions(attr(PK).map_err(|e| self.fail("CreateTable", &e))?)
            .attribute_definitions(attr(SK).map_err(|e| self.fail("CreateTable", &e))?)
            .attribute_definitions(attr(OPEN_PK).map_err(|e| self.fail("CreateTable", &e))?)
            .attribute_definitions(attr(NAME_KEY).map_err(|e| self.fail("CreateTable", &e))?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(NAME_INDEX)
                    .key_schema(key(NAME_KEY, KeyType::Hash).map_err(|e| self.fail("CreateTable", &e))?)
                    .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                    .build()
                    .map_err(|e| self.fail("CreateTable", &e))?,
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(OPEN_INDEX)
                    .key_schema(key(OPEN_PK, KeyType::Hash).map_err(|e| self.fail("CreateTable", &e))?)
                    .key_schema(key(SK, KeyType::Range).map_err(|e| self.fail("CreateTable", &e))?)
                    .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                    .build()
                    .map_err(|e| self.fail("CreateTable", &e))?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => return Ok(()),
            Err(e) => return Err(self.fail("CreateTable", &e)),
        }
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| self.fail("UpdateTimeToLive", &e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| self.fail("UpdateTimeToLive", &e))?;
        Ok(())
    }
}
