"""Tier adapters: OpenAI-compatible HTTP, Amazon Bedrock Converse and SageMaker AI endpoints."""
