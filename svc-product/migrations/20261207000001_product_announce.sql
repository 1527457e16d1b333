-- Every replica keeps products and listing pages in memory (src/cache/memory.rs)
-- and must hear of every committed write, whichever replica made it. Announced
-- on `product_changed` as `<id>:<version>` from inside the writing transaction:
-- PostgreSQL delivers it only on commit, in commit order, to every listener.
CREATE FUNCTION product_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('product_changed', NEW.id::text || ':' || NEW.version::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER product_announce AFTER INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION product_announce();
