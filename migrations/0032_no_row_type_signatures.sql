-- No function names a table's row type in its signature (docs/scale.md, "Citus": Citus leaves
-- such a function on the coordinator, and one distributed by hand is executable by PUBLIC on the
-- workers). memex._space(text) returned a spaces row: memex._space_id(text) returns its id
-- (sql/130). memex._reembed_no_op took the active spaces row: it takes its id (sql/190).
drop function if exists memex._space(text);
drop function if exists memex._reembed_no_op(memex.spaces, text, integer, text, text);
