{instruction}
%%
{output}
