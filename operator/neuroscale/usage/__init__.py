"""What each tenant of a cascade used and cost, read back from the gateway's chargeback metrics in Prometheus."""
