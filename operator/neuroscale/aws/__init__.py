"""boto3 adapters behind narrow seams: the pure core and the controllers never import boto3."""
