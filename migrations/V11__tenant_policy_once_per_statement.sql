-- Row-level security compares each row with the organization read once per statement.
--
-- current_organization_id() is STABLE, so a policy written `organization_id =
-- current_organization_id()` calls it (a setting lookup and a uuid parse) for every row a scan
-- reads: under the runtime role, GROUP BY customer over ten million purchases took 8.0-8.8 s
-- instead of 4.7-5.1 s. As a scalar subquery it is an init plan: evaluated once, then compared
-- as a parameter, which index conditions use as they used the call.
DO $$
DECLARE
    policy record;
BEGIN
    FOR policy IN
        SELECT tablename, policyname FROM pg_policies
        WHERE schemaname = 'public' AND policyname LIKE '%\_organization\_isolation'
    LOOP
        EXECUTE format(
            'ALTER POLICY %I ON %I USING (organization_id = (SELECT current_organization_id())) '
            'WITH CHECK (organization_id = (SELECT current_organization_id()))',
            policy.policyname, policy.tablename);
    END LOOP;
END
$$;

ALTER POLICY organizations_listing ON organizations
    USING (organization_id = (SELECT current_organization_id()) OR (SELECT current_organization_id()) IS NULL);
ALTER POLICY organizations_registration ON organizations
    WITH CHECK (organization_id = (SELECT current_organization_id()));
