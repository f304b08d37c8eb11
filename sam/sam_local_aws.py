"""Makes moto_server the AWS of `sam local`: creates the credentials table
(its key schema and TTL read from template.yaml, so they cannot drift) and a
KMS key with the alias sam/env.json names. Idempotent.

Usage: python sam/sam_local_aws.py [ENDPOINT]   (default http://127.0.0.1:5000)
"""

import json
import pathlib
import sys

import boto3
from samcli.yamlhelper import yaml_parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENV = json.loads((ROOT / "sam" / "env.json").read_text())["Parameters"]


def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
    session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    table = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]["CredentialsTable"]["Properties"]
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    name = ENV["TABLE_NAME"]
    if name not in dynamodb.list_tables()["TableNames"]:
        try:
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=table["AttributeDefinitions"],
                KeySchema=table["KeySchema"],
                # The due index of background re-validation (credentials-revalidate).
                GlobalSecondaryIndexes=table.get("GlobalSecondaryIndexes", []),
                BillingMode=table["BillingMode"],
            )
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=table["TimeToLiveSpecification"])
        except dynamodb.exceptions.ResourceInUseException:
            pass  # made meanwhile by another run
    kms = session.client("kms", endpoint_url=endpoint)
    alias = ENV["KMS_KEY_ID"]
    if alias not in [a["AliasName"] for a in kms.list_aliases()["Aliases"]]:
        key = kms.create_key(Description="MailMind sam local", KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")
        try:
            kms.create_alias(AliasName=alias, TargetKeyId=key["KeyMetadata"]["KeyId"])
        except kms.exceptions.AlreadyExistsException:
            kms.schedule_key_deletion(KeyId=key["KeyMetadata"]["KeyId"], PendingWindowInDays=7)
    print(f"table {name} and key {alias} ready at {endpoint}")


if __name__ == "__main__":
    main()
