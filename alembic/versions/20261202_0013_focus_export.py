"""FOCUS 1.2 export: the chargeback rows in the FinOps Open Cost and Usage Specification's columns

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 20:00:00

- `v_focus_1_2`: one FOCUS row per `cost_allocation_daily` row, so a FinOps platform can ingest
  OpenAI spend beside cloud bills. Every Mandatory column of FOCUS 1.2, the Conditional ones
  that apply to OpenAI (sub account = project, resource = API key, consumed quantity, SKU,
  pricing category) and the Recommended ChargeFrequency and ServiceSubcategory, named exactly
  as the spec spells them (quoted identifiers), then custom `x_` columns. Date/Time columns are
  timestamptz at UTC midnight; BilledCost = EffectiveCost = ContractedCost = the allocated
  share of the bill; ListCost = the list-price estimate, else the billed share.
- `v_focus_1_2_csv`: the same rows and columns for a file, the Date/Time columns as text in
  FOCUS's Date/Time Format ('2026-11-01T00:00:00Z'), whatever the session's TimeZone.
- `focus_unit(quantity_unit)`: the Costs API's unit strings (`tokens`, `1000_tokens`,
  `gibibyte_hours`, `duration_seconds`, ...) in FOCUS's Unit Format (`Tokens`, `1000 Tokens`,
  `GiB-Hours`, `Seconds`, ...).

Spec read: FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec tag v1.2, commit 7296e3146fb9
(specification/columns/*.md, specification/attributes/*.md). The mapping and what does not
apply are in docs/focus.md. Frozen like every migration: the SQL is written out here, nothing
is imported from the app.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
VIEW = "v_focus_1_2"
CSV_VIEW = "v_focus_1_2_csv"

#: Unit Format (FOCUS 1.2 attributes/unit_format.md): plural count units capitalized
#: ("Tokens"), data sizes abbreviated ("GiB"), `<unit>-<plural time units>` ("GiB-Hours"), a
#: whole-number quantity prefix with a space ("1000 Tokens"). An unknown unit keeps its words,
#: capitalized and joined ("api_widgets" -> "ApiWidgets"): a new count-based noun.
FOCUS_UNIT = f"""
CREATE FUNCTION {S}.focus_unit(quantity_unit text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN b IS NULL OR b = '' THEN NULL ELSE
        coalesce(n || ' ', '') || CASE b
            WHEN 'token' THEN 'Tokens'
            WHEN 'tokens' THEN 'Tokens'
            WHEN 'image' THEN 'Images'
            WHEN 'images' THEN 'Images'
            WHEN 'character' THEN 'Characters'
            WHEN 'characters' THEN 'Characters'
            WHEN 'request' THEN 'Requests'
            WHEN 'requests' THEN 'Requests'
            WHEN 'call' THEN 'Calls'
            WHEN 'calls' THEN 'Calls'
            WHEN 'session' THEN 'Sessions'
            WHEN 'sessions' THEN 'Sessions'
            WHEN 'seconds' THEN 'Seconds'
            WHEN 'duration_seconds' THEN 'Seconds'
            WHEN 'minutes' THEN 'Minutes'
            WHEN 'duration_minutes' THEN 'Minutes'
            WHEN 'hours' THEN 'Hours'
            WHEN 'duration_hours' THEN 'Hours'
            WHEN 'gibibyte_hours' THEN 'GiB-Hours'
            WHEN 'gibibyte_days' THEN 'GiB-Days'
            WHEN 'gigabyte_hours' THEN 'GB-Hours'
            WHEN 'gigabyte_days' THEN 'GB-Days'
            WHEN 'gibibytes' THEN 'GiB'
            WHEN 'gigabytes' THEN 'GB'
            ELSE replace(initcap(replace(b, '_', ' ')), ' ', '')
        END
    END
    FROM (SELECT substring(u FROM '^([0-9]+)_') AS n, regexp_replace(u, '^[0-9]+_', '') AS b
          FROM (SELECT lower(trim(quantity_unit)) AS u) x) y
$$
"""

#: usage_kind -> ServiceName, ServiceSubcategory (parent: AI and Machine Learning), SkuMeter.
#: A kind not listed (and 'other') is the generic OpenAI API service.
SERVICES = """
    ('completions', 'OpenAI Responses and Chat Completions', 'Generative AI', 'Tokens'),
    ('embeddings', 'OpenAI Embeddings', 'Natural Language Processing', 'Embedding Tokens'),
    ('moderations', 'OpenAI Moderations', 'Natural Language Processing', 'Moderation Requests'),
    ('images', 'OpenAI Images', 'Generative AI', 'Image Generation'),
    ('audio_speeches', 'OpenAI Text to Speech', 'Generative AI', 'Speech Characters'),
    ('audio_transcriptions', 'OpenAI Transcriptions', 'Natural Language Processing',
     'Transcription Duration'),
    ('vector_stores', 'OpenAI Vector Stores', 'AI Platforms', 'Vector Store Storage'),
    ('code_interpreter_sessions', 'OpenAI Code Interpreter', 'AI Platforms',
     'Code Interpreter Sessions'),
    ('file_search_calls', 'OpenAI File Search', 'AI Platforms', 'File Search Tool Calls'),
    ('web_search_calls', 'OpenAI Web Search', 'AI Platforms', 'Web Search Tool Calls')
"""

FOCUS_VIEW = f"""
CREATE VIEW {S}.{VIEW} AS
SELECT
    a.allocated_usd AS "BilledCost",
    a.organization AS "BillingAccountId",
    a.organization AS "BillingAccountName",
    upper(a.currency) AS "BillingCurrency",
    (x.month_start + interval '1 month') AT TIME ZONE 'UTC' AS "BillingPeriodEnd",
    x.month_start AT TIME ZONE 'UTC' AS "BillingPeriodStart",
    x.charge_category AS "ChargeCategory",
    NULL::text AS "ChargeClass",
    coalesce(a.line_item, x.service_name) AS "ChargeDescription",
    'Usage-Based'::text AS "ChargeFrequency",
    (a.usage_date + 1)::timestamp AT TIME ZONE 'UTC' AS "ChargePeriodEnd",
    a.usage_date::timestamp AT TIME ZONE 'UTC' AS "ChargePeriodStart",
    CASE WHEN x.metered THEN a.quantity END AS "ConsumedQuantity",
    CASE WHEN x.metered THEN x.unit END AS "ConsumedUnit",
    a.allocated_usd AS "ContractedCost",
    a.allocated_usd AS "EffectiveCost",
    'OpenAI'::text AS "InvoiceIssuerName",
    coalesce(a.estimated_usd, a.allocated_usd) AS "ListCost",
    CASE WHEN x.metered THEN 'Standard' END AS "PricingCategory",
    CASE WHEN x.metered THEN a.quantity END AS "PricingQuantity",
    CASE WHEN x.metered THEN x.unit END AS "PricingUnit",
    'OpenAI'::text AS "ProviderName",
    'OpenAI'::text AS "PublisherName",
    a.api_key_id AS "ResourceId",
    nullif(nullif(k.name, ''), a.api_key_id) AS "ResourceName",
    CASE WHEN a.api_key_id IS NOT NULL THEN 'API Key' END AS "ResourceType",
    'AI and Machine Learning'::text AS "ServiceCategory",
    x.service_name AS "ServiceName",
    coalesce(s.service_subcategory, 'Other (AI and Machine Learning)') AS "ServiceSubcategory",
    x.sku_id AS "SkuId",
    CASE
        WHEN a.usage_kind = 'completions' AND a.line_item LIKE '%, %'
            THEN 'Tokens (' || lower(regexp_replace(a.line_item, '^.*, ', '')) || ')'
        ELSE coalesce(s.sku_meter, a.line_item, 'OpenAI API')
    END AS "SkuMeter",
    NULL::jsonb AS "SkuPriceDetails",
    x.sku_id AS "SkuPriceId",
    coalesce(a.project_id, a.organization || '/default-project') AS "SubAccountId",
    coalesce(nullif(p.name, ''), a.project_id, 'Default project') AS "SubAccountName",
    'Project'::text AS "SubAccountType",
    a.usage_kind AS "x_UsageKind",
    a.model AS "x_Model",
    a.project_id AS "x_ProjectId",
    a.user_id AS "x_UserId",
    CASE WHEN a.user_id IS NOT NULL THEN nullif(u.name, '') END AS "x_UserName",
    CASE WHEN a.api_key_id IS NOT NULL THEN k.redacted_value END AS "x_ApiKeyRedactedValue",
    a.allocation_basis AS "x_AllocationBasis",
    a.unallocated_reason AS "x_UnallocatedReason",
    CASE WHEN a.estimated_usd IS NULL THEN 'Billed cost' ELSE 'List price estimate' END
        AS "x_ListCostSource"
FROM {S}.cost_allocation_daily a
LEFT JOIN {S}.projects p ON p.organization = a.organization AND p.id = a.project_id
LEFT JOIN {S}.api_keys k ON k.organization = a.organization AND k.id = a.api_key_id
LEFT JOIN {S}.users u ON u.organization = a.organization AND u.id = a.user_id
LEFT JOIN (VALUES {SERVICES}) AS s(usage_kind, service_name, service_subcategory, sku_meter)
       ON s.usage_kind = a.usage_kind
CROSS JOIN LATERAL (
    -- FOCUS: a Usage charge has a PricingQuantity and a ConsumedQuantity; a billed amount
    -- reported without a quantity (or its unit) is an Adjustment.
    SELECT a.quantity IS NOT NULL AND {S}.focus_unit(a.quantity_unit) IS NOT NULL AS metered,
           CASE WHEN a.quantity IS NOT NULL AND {S}.focus_unit(a.quantity_unit) IS NOT NULL
                THEN 'Usage' ELSE 'Adjustment' END AS charge_category,
           {S}.focus_unit(a.quantity_unit) AS unit,
           -- a timestamp without time zone: the session's TimeZone plays no part
           date_trunc('month', a.usage_date::timestamp) AS month_start,
           coalesce(s.service_name, 'OpenAI API') AS service_name,
           a.usage_kind || coalesce(': ' || a.line_item, '') AS sku_id
) x
"""

#: The view's columns, in order: FOCUS's (alphabetical), then the custom `x_` ones.
COLUMNS = [
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "EffectiveCost", "InvoiceIssuerName",
    "ListCost", "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName",
    "PublisherName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory",
    "ServiceName", "ServiceSubcategory", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId",
    "SubAccountId", "SubAccountName", "SubAccountType",
    "x_UsageKind", "x_Model", "x_ProjectId", "x_UserId", "x_UserName", "x_ApiKeyRedactedValue",
    "x_AllocationBasis", "x_UnallocatedReason", "x_ListCostSource",
]  # fmt: skip
DATETIME_COLUMNS = {
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargePeriodEnd",
    "ChargePeriodStart",
}


#: to_char() pattern of FOCUS's Date/Time Format, applied to the UTC wall time.
ISO_8601_UTC = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'


def _csv_column(column: str) -> str:
    if column in DATETIME_COLUMNS:
        return f"to_char(\"{column}\" AT TIME ZONE 'UTC', '{ISO_8601_UTC}') AS \"{column}\""
    return f'"{column}"'


#: The same rows for a file: a CSV has no types, so the Date/Time columns are text in FOCUS's
#: Date/Time Format ('YYYY-MM-DDTHH:mm:ssZ', UTC), whatever the session's TimeZone.
CSV_VIEW_SQL = f"""
CREATE VIEW {S}.{CSV_VIEW} AS
SELECT {", ".join(_csv_column(column) for column in COLUMNS)}
FROM {S}.{VIEW}
"""

COMMENT = f"""
COMMENT ON VIEW {S}.{VIEW} IS 'FOCUS 1.2 (FOCUS_Spec tag v1.2, 7296e31) export of cost_allocation_daily, one row per allocation row; mapping in docs/focus.md.'
"""

# A new view is a new object: give it to the BI role (0002's grants). Default privileges cover
# objects created by the role that set them, which may not be this one.
GRANT_VIEW = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {S}.{VIEW}, {S}.{CSV_VIEW} TO usage_readonly;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(FOCUS_UNIT)
    op.execute(FOCUS_VIEW)
    op.execute(CSV_VIEW_SQL)
    op.execute(COMMENT)
    op.execute(GRANT_VIEW)


def downgrade() -> None:
    op.execute(f"DROP VIEW {S}.{CSV_VIEW}")
    op.execute(f"DROP VIEW {S}.{VIEW}")
    op.execute(f"DROP FUNCTION {S}.focus_unit(text)")
